"""2D distillation probe of a pixel prior: SDS (or SJC / ISM) straight into images, scored by the judge.

  python -m dreamfusion_jax.shapes.probe2d --out probe.png [--method sds] [--steps 300] [--guidance 50]
      [--t-max 0.6 --t-anneal 100]

For every shape x colour in the grid, `--images` images start from grey and are optimised by the loss
alone (as distill.image2d: the generator is the identity), then the judge names their shape and colour.
This is what the NeRF distillation asks of the prior, without the NeRF: if the probe fails for a
prompt, no 3D run on that prompt can succeed. It is much cheaper than a 3D run (no rendering).
"""

import argparse
import time

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax import config_files
from dreamfusion_jax.distill import image2d
from dreamfusion_jax.distill import sds as sds_lib
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import sample


def probe(prior, params, config, prompts, images_per_prompt: int, seed: int, lr: float = 0.05):
  """Images [len(prompts) * images_per_prompt, s, s, 3] in [0, 1], prompt-major, optimised together."""
  emb = prior.encode_text(params, list(prompts) + [config.negative_prompt])
  cond = jnp.repeat(emb[:-1], images_per_prompt, axis=0)
  uncond = jnp.broadcast_to(emb[-1:], cond.shape)
  x, _ = image2d.optimise_conditioned(config, prior, params, cond, uncond, jax.random.PRNGKey(seed),
                                      lr, progress=True)
  return prior.decode(params, x)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--out", required=True, help="PNG grid to write (rows: shapes)")
  parser.add_argument("--weights", default=sample.WEIGHTS_DIR, help="diffusers-layout pixel prior")
  parser.add_argument("--method", default="sds", choices=["sds", "sjc", "ism"])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--guidance", type=float, default=50.0, help="classifier-free guidance scale")
  parser.add_argument("--t-max", type=float, default=None,
                      help="upper end of the t range (default: the method's in configs/base.py)")
  parser.add_argument("--t-anneal", type=int, default=0,
                      help="steps for t_max to fall from the method's t_max_start (0.98) to --t-max")
  parser.add_argument("--threshold", default="none", choices=sds_lib.THRESHOLDS,
                      help="sds: Imagen's thresholding of the guided x0 (dynamic: at the 99.5th percentile)")
  parser.add_argument("--images", type=int, default=2, help="images per prompt")
  parser.add_argument("--colours", nargs="+", default=["red", "blue"], help="grid columns")
  parser.add_argument("--shapes", nargs="+", default=list(captions.SHAPES), help="grid rows")
  parser.add_argument("--view", default="none", choices=list(text_lib.VIEW_NAMES) + ["none"],
                      help="view suffix of every prompt (none: 'a red cube')")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  for s in args.shapes:
    for c in args.colours:
      captions.parse_prompt(captions.caption(s, c))  # unknown names fail before any work
  config = image2d.configure(config_files.load(), "unused", args.method, args.steps, args.guidance)
  if args.t_max is not None:
    if args.method == "sjc":
      parser.error("--t-max applies to sds and ism (sjc draws its noise levels from config.sjc ticks)")
    section = config[args.method]
    if not section.t_min <= args.t_max <= 1.0 or args.t_anneal < 0:
      parser.error(f"--t-max must be in [{section.t_min}, 1] and --t-anneal >= 0, "
                   f"got {args.t_max}, {args.t_anneal}")
    section.t_max, section.t_anneal_steps = args.t_max, args.t_anneal
  if args.threshold != "none":
    if args.method != "sds":
      parser.error(f"--threshold applies to --method sds, got {args.method}")
    config.sds.threshold = args.threshold
  prior, params = stable_diffusion.load_prior(args.weights, "float32", local_files_only=True)
  start = time.time()
  prompts = [captions.caption(s, c, None if args.view == "none" else args.view)
             for s in args.shapes for c in args.colours]
  images = probe(prior, params, config, prompts, args.images, args.seed)
  images = np.asarray(images)
  cols = len(args.colours) * args.images
  imageio.imwrite(args.out, sample.grid(images, len(args.shapes), cols))
  shape_major = [s for s in args.shapes for _ in range(cols)]
  colour_cycle = [c for c in args.colours for _ in range(args.images)]
  scores = sample.score_labels(images, shape_major, colour_cycle * len(args.shapes))
  t_note = "" if args.t_max is None else f", t_max {args.t_max} (annealed over {args.t_anneal})"
  t_note += f", {args.threshold} threshold" if args.threshold != "none" else ""
  print(f"{args.method} {args.steps} steps, CFG {args.guidance}{t_note}: {len(images)} images in "
        f"{time.time() - start:.0f} s -> {args.out}")
  print(scores)


if __name__ == "__main__":
  main()
