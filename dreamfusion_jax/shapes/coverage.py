"""How much of a training view the world's true objects cover: the figures behind reg.coverage_max.

  python -m dreamfusion_jax.shapes.coverage [--config configs/shapes.py] [--views 512]

For each shape, the fraction of a view's pixels its true object covers, over views drawn from the
config's camera distribution (the NeRF's training views): mean, 90th percentile and maximum.
configs/shapes.py caps the NeRF's covered fraction (a view's mean opacity) at 0.6 from these.
"""

import argparse

import jax
import numpy as np

from dreamfusion_jax import config_files
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import world


def view_coverage(shape: str, cameras: camera_lib.Cameras, supersample: int = 2) -> np.ndarray:
  """[B]: the fraction of each camera's pixels that the true `shape` covers (anti-aliased edges count
  their covered share)."""
  _, covered = world.render_prompt(f"a {shape}", cameras, shading.ALBEDO, supersample=supersample)
  return np.asarray(covered).reshape(covered.shape[0], -1).mean(axis=-1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--config", default=config_files.SHAPES, help="config file")
  parser.add_argument("--views", type=int, default=512, help="views drawn per shape")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if args.views < 1:
    raise ValueError(f"--views must be >= 1, got {args.views}")
  config = config_files.load(args.config)  # refuses a missing file by name
  cameras = camera_lib.sample_views(jax.random.PRNGKey(args.seed), args.views, config)
  print(f"covered fraction of {args.views} views of {args.config} "
        f"(reg.coverage_max = {config.reg.coverage_max}):")
  for shape in captions.SHAPES:
    c = view_coverage(shape, cameras)
    print(f"  {shape:9s} mean {c.mean():.2f}  p90 {np.percentile(c, 90):.2f}  max {c.max():.2f}")


if __name__ == "__main__":
  main()
