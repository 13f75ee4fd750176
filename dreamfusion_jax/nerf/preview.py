"""Renders the untrained field (the density blob) from four views in every mode, as one PNG grid.

Run:
  python -m dreamfusion_jax.nerf.preview --out blob.png [--resolution 64] [--config configs/base.py]

Rows: albedo, lambertian, textureless, normals, depth. Columns: front, side, back (elevation 15) and an
overhead-ish view (elevation 75). A correct renderer shows a ball lit from the upper right in the shaded
rows, and normals whose colour follows the outward direction (right = red, up = green, towards = blue).
"""

import os

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from dreamfusion_jax.export import images
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.nerf import vis

_BASE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "base.py")
_CONFIG = config_flags.DEFINE_config_file("config", os.path.normpath(_BASE), "Config file.")
_OUT = flags.DEFINE_string("out", "blob.png", "Where to write the PNG grid.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Side of each rendered view in pixels.")
_DISTANCE = flags.DEFINE_float("distance", 1.5, "Camera distance from the origin.")
_CHUNK = flags.DEFINE_integer("chunk", 1024, "Rays per chunk (bounds memory; 0: a whole view at once).")
_BLOB_ONLY = flags.DEFINE_bool(
    "blob_only", False, "Zero the MLP's density and albedo heads, leaving exactly the blob (and the "
    "density bias) with grey albedo: a clean check of normals and shading.")


def preview_cameras(resolution: int, distance: float) -> camera.Cameras:
  """Front, side and back at elevation 15 plus a front view from elevation 75."""
  ring = camera.orbit(4, resolution, 15.0, distance)
  top = camera.orbit(1, resolution, 75.0, distance)
  return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[:3], b]), ring, top)


def preview_grid(config, resolution: int, distance: float, chunk: int, seed: int = 0,
                 blob_only: bool = False):
  """uint8 grid [rows = modes + normals + depth, columns = views] of the freshly initialised scene."""
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.PRNGKey(seed))
  if blob_only:
    heads = {name: jax.tree_util.tree_map(jnp.zeros_like, params["params"]["field"][name])
             for name in ("density", "albedo")}
    params = {"params": {**params["params"], "field": {**params["params"]["field"], **heads}}}
  cams = preview_cameras(resolution, distance)
  num_views = cams.focal.shape[0]

  @jax.jit
  def render_mode(mode):
    return render.render_views(scene, params, cams, jax.random.PRNGKey(seed), config,
                               jnp.full((num_views,), mode, jnp.int32), train=False, chunk=chunk)

  rows = [render_mode(m).rgb for m in (shading.ALBEDO, shading.LAMBERTIAN, shading.TEXTURELESS)]
  out = render_mode(shading.ALBEDO)
  rows.append(vis.normal_image(out))
  rows.append(images.colorize_depth(out.depth, out.opacity))
  return images.make_grid(rows)


def main(argv):
  del argv
  config = _CONFIG.value
  with config.unlocked():
    config.render.resolution = _RESOLUTION.value
  grid = preview_grid(config, _RESOLUTION.value, _DISTANCE.value, _CHUNK.value, seed=config.seed,
                      blob_only=_BLOB_ONLY.value)
  images.save_png(_OUT.value, grid)
  print(f"wrote {_OUT.value} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
  app.run(main)
