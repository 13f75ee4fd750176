"""DDIM samples from a pixel prior: a grid of every shape (rows) in several colours (columns).

  python -m dreamfusion_jax.shapes.sample --out grid.png
  python -m dreamfusion_jax.shapes.sample --out grid.png --colours red blue --steps 50 --guidance 7.5

Reads the shipped weights (dreamfusion_jax/shapes/weights) through the project's prior loader, the same
path the distillation step uses. Sampling is deterministic DDIM (eta = 0, Song et al. 2021) with
classifier-free guidance eps_u + w (eps_c - eps_u) against the empty prompt.
"""

import argparse
import functools
import os

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import captions

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def ddim_timesteps(num_train_timesteps: int, num_steps: int) -> np.ndarray:
  """Descending timesteps with diffusers' "leading" spacing: T/n * [n-1, ..., 0]."""
  if not 1 <= num_steps <= num_train_timesteps:
    raise ValueError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
  return (np.arange(num_steps)[::-1] * (num_train_timesteps // num_steps)).astype(np.int32)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _sample(prior, params, cond, uncond, key, num_steps, guidance_scale, camera):
  ts = jnp.asarray(ddim_timesteps(prior.num_train_timesteps, num_steps))
  ab_table = jnp.asarray(prior.alphas_cumprod, jnp.float32)
  # The last step lands on alpha-bar = 1, i.e. returns the clean estimate.
  ab_next = jnp.concatenate([ab_table[ts[1:]], jnp.ones((1,), jnp.float32)])
  n = cond.shape[0]
  x = jax.random.normal(key, (n, prior.sample_size, prior.sample_size, prior.channels))

  def body(i, x):
    t = jnp.full((n,), ts[i])
    eps = prior.guided_noise(params, x, t, cond, uncond, guidance_scale, camera=camera)
    ab = jnp.full((n,), ab_table[ts[i]])
    # Clip the clean estimate to the data range (the scheduler's clip_sample), then re-derive eps so
    # the DDIM update stays consistent with the clipped estimate.
    x0 = jnp.clip(schedule.predict_x0(x, eps, ab), -1.0, 1.0)
    eps = (x - jnp.sqrt(ab)[:, None, None, None] * x0) / jnp.sqrt(1.0 - ab)[:, None, None, None]
    return schedule.ddim_step(x, eps, ab, jnp.full((n,), ab_next[i]))

  return jax.lax.fori_loop(0, num_steps, body, x)


# The camera a camera-conditioned prior draws its samples through: the world's middle distance
# (configs/shapes.py's 1.2-1.5) and focal (base.py's 0.7-1.35 image widths), 30 degrees up, aimed at the
# object (nerf.camera.conditioning: elevation 30, apparent size 76, centre 0, 0).
SAMPLE_CAMERA = dict(elevation=30.0, distance=1.35, focal_scale=1.025)


def ddim_sample(prior, params, prompts, key, num_steps: int = 50, guidance_scale: float = 7.5,
                negative_prompt: str = "") -> jax.Array:
  """Images [N, s, s, 3] in [0, 1], one per prompt, by DDIM with classifier-free guidance (through
  SAMPLE_CAMERA for a camera-conditioned prior)."""
  emb = prior.encode_text(params, list(prompts) + [negative_prompt])
  cond, uncond = emb[:-1], jnp.broadcast_to(emb[-1:], emb[:-1].shape)
  camera = None
  if prior.camera_conditioned:
    camera = camera_lib.conditioning(camera_lib.orbit(cond.shape[0], prior.sample_size, **SAMPLE_CAMERA))
  x = _sample(prior, params, cond, uncond, key, int(num_steps), jnp.float32(guidance_scale), camera)
  return prior.decode(params, x)


def grid(images: np.ndarray, rows: int, cols: int, upscale: int = 4) -> np.ndarray:
  """[rows*cols, h, w, 3] in [0, 1] -> one uint8 image, row-major, each tile upscaled by pixel repeat."""
  h, w = images.shape[1:3]
  tiles = np.asarray(images).reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4)
  img = tiles.reshape(rows * h, cols * w, 3).repeat(upscale, 0).repeat(upscale, 1)
  return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--out", required=True, help="PNG to write")
  parser.add_argument("--weights", default=WEIGHTS_DIR, help="diffusers-layout prior folder")
  parser.add_argument("--colours", nargs="+", default=list(captions.COLOUR_NAMES), help="grid columns")
  parser.add_argument("--shapes", nargs="+", default=list(captions.SHAPES), help="grid rows")
  parser.add_argument("--view", default=None, help="append ', {view} view' to every prompt")
  parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
  parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--score", action="store_true",
                      help="print how often the shipped judge names each sample's shape and colour")
  args = parser.parse_args()
  prompts = [captions.caption(s, c, args.view) for s in args.shapes for c in args.colours]
  prior, params = stable_diffusion.load_prior(args.weights, "float32", local_files_only=True)
  images = ddim_sample(prior, params, prompts, jax.random.PRNGKey(args.seed), args.steps, args.guidance)
  imageio.imwrite(args.out, grid(np.asarray(images), len(args.shapes), len(args.colours)))
  print(f"wrote {len(prompts)} samples ({len(args.shapes)} shapes x {len(args.colours)} colours) "
        f"to {args.out}")
  if args.score:
    print(score(images, args.shapes, args.colours))


def score(images, shapes, colours) -> dict[str, float]:
  """Judge accuracy of a shape-major grid of samples: shape head, colour head, and both at once."""
  return score_labels(images, [s for s in shapes for _ in colours], list(colours) * len(shapes))


def score_labels(images, shapes, colours) -> dict[str, float]:
  """How often the shipped judge names each image's shape and colour (`shapes`/`colours`: one name per image)."""
  from dreamfusion_jax.shapes import judge  # pylint: disable=g-import-not-at-top
  lp = judge.log_probs(judge.load(), jnp.asarray(images))
  shape_ok = np.asarray(jnp.argmax(lp["shape"], -1)) == np.array([captions.SHAPES.index(s) for s in shapes])
  colour_ok = np.asarray(jnp.argmax(lp["colour"], -1)) == np.array(
      [captions.COLOUR_NAMES.index(c) for c in colours])
  return {"shape": float(shape_ok.mean()), "colour": float(colour_ok.mean()),
          "both": float((shape_ok & colour_ok).mean())}


if __name__ == "__main__":
  main()
