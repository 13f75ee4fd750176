"""What a person watches during training: a progress bar and TensorBoard scalars and image grids.

Only process 0 writes; on the other processes every method is a no-op, so the loop needs no branches.
"""

import time

from absl import flags
from absl import logging
import jax
import numpy as np
import tqdm
from tensorboardX import SummaryWriter

from dreamfusion_jax.export import images
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import vis
from dreamfusion_jax.nerf import shading

# Rows of the logged image grid: (name, render mode or None for derived images).
GRID_ROWS = ("albedo", "shaded", "textureless", "normals", "depth")


def quiet_library_logs() -> None:
  """Shows absl WARNING and above only, unless the command line set --verbosity (or -v).

  Orbax logs some 40 INFO lines per checkpoint saved or restored through absl, which bury the progress
  bar and the results; the project itself logs nothing through absl. Call from an app's main().
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


class Reporter:
  """Progress bar + TensorBoard writer of one run (silent on processes other than 0)."""

  def __init__(self, workdir: str, total_steps: int, initial_step: int):
    self.active = jax.process_index() == 0
    self.start_time = time.time()
    self.start_step = initial_step
    if self.active:
      self.writer = SummaryWriter(f"{workdir}/tensorboard")
      self.bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                           smoothing=0.1)

  def advance(self, step: int) -> None:
    """Moves the bar to `step` (steps/s and ETA come from tqdm); no device sync."""
    if self.active:
      self.bar.update(step - self.bar.n)

  def show_loss(self, loss: float) -> None:
    if self.active:
      self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

  def scalars(self, step: int, metrics: dict) -> None:
    if self.active:
      for name, value in metrics.items():
        self.writer.add_scalar(name, float(value), step)
      elapsed = time.time() - self.start_time
      if step > self.start_step:
        self.writer.add_scalar("perf/steps_per_second", (step - self.start_step) / elapsed, step)

  def image(self, step: int, name: str, grid: np.ndarray) -> None:
    if self.active:
      self.writer.add_image(name, grid, step, dataformats="HWC")

  def close(self) -> None:
    if self.active:
      self.bar.close()
      self.writer.close()

  @property
  def wall_time(self) -> float:
    return time.time() - self.start_time


def view_grid(render_fn, params, config, num_views: int = 4) -> np.ndarray:
  """uint8 grid: rows albedo / shaded / textureless / normals / depth, columns = orbit views."""
  cams = camera.orbit(num_views, config.log.image_resolution, elevation=config.export.video_elevation,
                      distance=config.export.video_distance)
  rows = {}
  for name, mode in (("albedo", shading.ALBEDO), ("shaded", shading.LAMBERTIAN),
                     ("textureless", shading.TEXTURELESS)):
    out = render_fn(params, cams, mode)
    rows[name] = np.asarray(out.rgb[..., :3])
    if name == "albedo":
      rows["normals"] = np.asarray(vis.normal_image(out))
      rows["depth"] = np.asarray(images.colorize_depth(out.depth, out.opacity))
  return images.make_grid([rows[name] for name in GRID_ROWS])
