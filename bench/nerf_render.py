"""Times rendering one view of the default NeRF: forward, and forward + backward to the params.

Run:
  python bench/nerf_render.py [--resolution 64] [--repeats 5] [--chunk 512] [--config configs/base.py]

Prints the median wall time in ms over `repeats` jitted calls after one warm-up (compile) call, with the
config's default sample counts (num_samples + num_importance per ray), Lambertian shading and normals.
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from dreamfusion_jax.nerf import camera  # pylint: disable=g-import-not-at-top
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading

_BASE = os.path.join(os.path.dirname(__file__), "..", "configs", "base.py")
_CONFIG = config_flags.DEFINE_config_file("config", os.path.normpath(_BASE), "Config file.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Side of the rendered view.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls after the warm-up.")
_CHUNK = flags.DEFINE_integer(
    "chunk", 512, "Rays per rematerialised chunk (0: the whole view at once; needs ~20+ GB on CPU).")


def _median_ms(fn, *args) -> tuple[float, float]:
  """(compile + first call, median of the timed calls) in milliseconds."""
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = 1e3 * (time.perf_counter() - start)
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(1e3 * (time.perf_counter() - start))
  return first, statistics.median(times)


def main(argv):
  del argv
  config = _CONFIG.value
  with config.unlocked():
    config.render.resolution = _RESOLUTION.value
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.PRNGKey(0))
  cams = camera.sample_views(jax.random.PRNGKey(1), 1, config)
  mode = jnp.array([shading.LAMBERTIAN], jnp.int32)

  def forward(p, key):
    return render.render_views(scene, p, cams, key, config, mode, chunk=_CHUNK.value).rgb

  def loss(p, key):
    out = render.render_views(scene, p, cams, key, config, mode, chunk=_CHUNK.value)
    return jnp.mean(out.rgb) + 1e-2 * jnp.mean(out.orientation) + 1e-3 * jnp.mean(out.opacity)

  key = jax.random.PRNGKey(2)
  samples = config.render.num_samples + config.render.num_importance
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; one {_RESOLUTION.value}x"
        f"{_RESOLUTION.value} view, {samples} samples/ray, chunk={_CHUNK.value}")
  for name, fn in (("forward", jax.jit(forward)), ("forward+backward", jax.jit(jax.grad(loss)))):
    first, median = _median_ms(fn, params, key)
    print(f"{name:>17}: {median:9.1f} ms median of {_REPEATS.value} (first call incl. compile "
          f"{first:.0f} ms)")


if __name__ == "__main__":
  app.run(main)
