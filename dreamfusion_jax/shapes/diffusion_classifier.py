"""The prior as a shape classifier: which shape's caption best denoises a true render of the world.

  python -m dreamfusion_jax.shapes.diffusion_classifier [--weights DIR] [--images 64] [--draws 2]

A diffusion model is a classifier (Li et al. 2023, "Your Diffusion Model is Secretly a Zero-Shot
Classifier"): for an image x and captions y, the caption with the lowest noise-prediction error
E_{t,eps} ||eps - eps_hat(sqrt(ab_t) x + sqrt(1 - ab_t) eps, t, y)||^2 is the one the model finds most
likely (the error is the diffusion loss, a bound on -log p(x | y)). Asked about the world's own renders,
this says how well the prior tells the shapes apart, shape by shape, without sampling and without the
judge: the figure to watch while training the prior. Every caption of an image sees the same t and
noise draws, so the comparison is paired. The renders come from configs/shapes.py's cameras (the shapes
main job's) with a fixed key; captions carry the render's colour, none for textureless renders.
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import world

TIMESTEPS = (200, 400, 600, 800)  # where shape, not noise or fine texture, decides the error


@functools.partial(jax.jit, static_argnums=0)
def caption_errors(prior, params, x0: jax.Array, emb: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
  """Noise-prediction error of every caption for every image, [N, K].

  x0 [N, s, s, C] in model space; emb [N, K, L, D], K captions per image; t [M] timesteps and eps
  [M, N, s, s, C] noise draws shared by the K captions of an image; the error is the mean over the M
  draws and the pixels of (eps - eps_hat)^2.
  """
  n, k = emb.shape[:2]

  def one_draw(t_m, eps_m):
    ab = schedule.gather(prior.alphas_cumprod, jnp.full((n,), t_m))
    x_t = schedule.add_noise(x0, eps_m, ab)
    rep = lambda a: jnp.repeat(a, k, axis=0)  # image-major: image i's K captions are rows iK..iK+K-1
    pred = prior.predict_noise(params, rep(x_t), jnp.full((n * k,), t_m), emb.reshape((n * k,) + emb.shape[2:]))
    return jnp.mean((pred - rep(eps_m))**2, axis=(1, 2, 3)).reshape(n, k)

  return jnp.mean(jax.lax.map(lambda a: one_draw(*a), (t, eps)), axis=0)


def shape_captions(colour: int, mode: int) -> list[str]:
  """The 8 shape captions for a render: its colour, or none for a textureless one."""
  name = None if mode == shading.TEXTURELESS else captions.COLOUR_NAMES[colour]
  return [captions.caption(s, name) for s in captions.SHAPES]


def classify(prior, params, images_per_shape: int = 8, draws: int = 2, seed: int = 0) -> dict:
  """Accuracy of the prior as a shape classifier on fresh world renders, overall and per shape.

  Returns {"accuracy": float, "per_shape": {shape: float}, "margin": float}; margin is the mean, over
  the correctly classified renders, of the runner-up caption's error over the true one's minus 1.
  """
  from dreamfusion_jax.shapes import train_prior  # pylint: disable=g-import-not-at-top
  config = train_prior.CAMERA_CONFIGS["shapes"]()
  n = images_per_shape * len(captions.SHAPES)
  data_key, eps_key = jax.random.split(jax.random.PRNGKey(seed))
  batch = world.sample_batch(data_key, n, config, prior.sample_size)
  scenes = jax.tree_util.tree_map(np.asarray, batch.scenes)
  texts = [c for i in range(n) for c in shape_captions(int(scenes.colour[i]), int(scenes.mode[i]))]
  emb = prior.encode_text(params, texts)
  emb = emb.reshape((n, len(captions.SHAPES)) + emb.shape[1:])
  x0 = prior.encode_image(params, batch.images)
  t = jnp.asarray(TIMESTEPS * draws, jnp.int32)
  eps = jax.random.normal(eps_key, (len(t),) + x0.shape)
  errors = np.asarray(caption_errors(prior, params, x0, emb, t, eps))
  return summarize(errors, scenes.shape)


def summarize(errors: np.ndarray, true_shape: np.ndarray) -> dict:
  """Accuracy (argmin of each row against `true_shape`), per shape, and the winners' margin."""
  guess = np.argmin(errors, axis=1)
  right = guess == true_shape
  per_shape = {s: float(np.mean(right[true_shape == i])) for i, s in enumerate(captions.SHAPES)
               if np.any(true_shape == i)}
  ordered = np.sort(errors, axis=1)
  margin = float(np.mean(ordered[right, 1] / ordered[right, 0] - 1.0)) if np.any(right) else 0.0
  return {"accuracy": float(np.mean(right)), "per_shape": per_shape, "margin": margin}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--weights", default=world_weights(), help="diffusers-layout prior folder")
  parser.add_argument("--images", type=int, default=8, help="renders per shape")
  parser.add_argument("--draws", type=int, default=2, help="noise draws per timestep in TIMESTEPS")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if args.images < 1 or args.draws < 1:
    parser.error(f"--images and --draws must be >= 1, got {args.images} and {args.draws}")
  prior, params = stable_diffusion.load_prior(args.weights, "float32", local_files_only=True,
                                              require_vae=False)
  result = classify(prior, params, args.images, args.draws, args.seed)
  print(f"{args.weights}: shape accuracy {result['accuracy']:.3f} over {args.images} renders per shape "
        f"(chance {1 / len(captions.SHAPES):.3f}), winners' margin {100 * result['margin']:.1f}%")
  print("  " + ", ".join(f"{s} {a:.2f}" for s, a in result["per_shape"].items()))


def world_weights() -> str:
  from dreamfusion_jax.shapes import sample  # pylint: disable=g-import-not-at-top
  return sample.WEIGHTS_DIR


if __name__ == "__main__":
  main()
