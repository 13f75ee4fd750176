"""Turntable videos: a 360-degree orbit rendered in each shading mode, written as MP4 and GIF.

The five videos are what DreamFusion's project page shows per object: albedo, shaded (Lambertian),
textureless (geometry only), world normals and depth. They come from two renders per frame: the
Lambertian render also carries the albedo, normals, depth and opacity, and a textureless render adds
the shading of a white object.
"""

import contextlib
import os
from typing import Callable, Sequence
import warnings

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import jax
import numpy as np

from dreamfusion_jax.export import images
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.nerf import shading

MODES = ("albedo", "shaded", "textureless", "normals", "depth")
VIDEO_FORMATS = ("mp4", "gif")

# render_fn(cameras, shading_mode) -> RenderOutput with rgb, albedo, depth, opacity, normals [B, H, W, ...].
RenderFn = Callable[[camera_lib.Cameras, int], object]


@contextlib.contextmanager
def _spawning_ffmpeg():
  """Silences JAX's warning at every fork ("os.fork() ... will likely lead to a deadlock") while
  imageio-ffmpeg starts its ffmpeg process: the child execs the ffmpeg binary at once and runs nothing of
  JAX's, so the deadlock it warns of cannot happen, and the warning only alarmed every main job's log."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    yield


def _chunks(cameras: camera_lib.Cameras, chunk: int):
  """Yields (cameras[i:i+chunk], valid) with the last chunk padded to `chunk` views (one compile)."""
  total = cameras.focal.shape[0]
  for start in range(0, total, chunk):
    index = np.minimum(np.arange(start, start + chunk), total - 1)
    yield jax.tree_util.tree_map(lambda x: x[index], cameras), min(chunk, total - start)


def normals_image(normals: np.ndarray, opacity: np.ndarray, background: float = 1.0) -> np.ndarray:
  """Accumulated world normals [..., 3] to colours (n + 1) / 2 over a flat background, in [0, 1].

  The renderer accumulates sum_i w_i n_i, so an opaque pixel holds a unit normal and an empty one
  zero; mapping n -> (n + opacity) / 2 and adding (1 - opacity) * background composites it.
  """
  opacity = np.clip(opacity, 0.0, 1.0)[..., None]
  return np.clip(0.5 * (normals + opacity) + (1.0 - opacity) * background, 0.0, 1.0)


def render_turntable(render_fn: RenderFn, num_frames: int, resolution: int, elevation: float,
                     distance: float, chunk: int = 8, modes: Sequence[str] = MODES,
                     orbit_fn: Callable = camera_lib.orbit) -> dict:
  """Renders a turntable of `num_frames` views evenly spaced in azimuth, in each of `modes`.

  Args:
    render_fn: (cameras [B], shading mode) -> RenderOutput; jit it, it sees `chunk` views per call.
    num_frames, resolution: frames of the orbit and their side in pixels (config.export.video_*).
    elevation, distance: of the orbit, degrees and scene units.
    chunk: views rendered per call (bounds memory: a chunk's rays live at once).
    modes: subset of MODES.
    orbit_fn: builds the cameras, as camera.orbit(num_frames, resolution, elevation, distance).
  Returns:
    {mode: uint8 [num_frames, resolution, resolution, 3]}.
  """
  unknown = [m for m in modes if m not in MODES]
  if unknown or not modes:
    raise ValueError(f"turntable modes must be a non-empty subset of {MODES}, got {list(modes)}")
  if num_frames < 1 or resolution < 1 or chunk < 1:
    raise ValueError(
        f"num_frames, resolution and chunk must be >= 1, got {num_frames}, {resolution}, {chunk}")
  cameras = orbit_fn(num_frames, resolution, elevation, distance)
  chunk = min(chunk, num_frames)
  parts = {m: [] for m in modes}
  depth, opacity = [], []
  for views, valid in _chunks(cameras, chunk):
    if any(m != "textureless" for m in modes):
      out = render_fn(views, shading.LAMBERTIAN)
      host = {k: np.asarray(getattr(out, k), np.float32)[:valid]
              for k in ("rgb", "albedo", "normals", "depth", "opacity")}
      colours = {"shaded": host["rgb"], "albedo": host["albedo"],
                 "normals": normals_image(host["normals"], host["opacity"])}
      for mode in set(modes) & set(colours):  # uint8 per chunk: a 120-frame video stays small
        parts[mode].append(images.to_uint8(colours[mode][..., :3]))
      depth.append(host["depth"])
      opacity.append(host["opacity"])
    if "textureless" in modes:
      rgb = np.asarray(render_fn(views, shading.TEXTURELESS).rgb, np.float32)[:valid]
      parts["textureless"].append(images.to_uint8(rgb[..., :3]))
  if "depth" in modes:
    # One depth range for the whole video (colorize_depth normalises per image, so the frames are
    # stacked into one tall image): per-frame ranges would make the colours flicker as it turns.
    d, o = np.concatenate(depth), np.concatenate(opacity)
    f, h, w = d.shape
    parts["depth"] = [images.to_uint8(
        images.colorize_depth(d.reshape(f * h, w), o.reshape(f * h, w)).reshape(f, h, w, 3))]
  return {mode: np.concatenate(parts[mode]) for mode in modes}


def _even(frames: np.ndarray) -> np.ndarray:
  """Pads H and W to even sizes by repeating the last row/column (H.264 with yuv420p needs them)."""
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  if pad_h or pad_w:
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  return frames


def write_video(path_without_ext: str, frames: np.ndarray, fps: float,
                formats: Sequence[str] = VIDEO_FORMATS) -> list:
  """Writes frames (uint8 or float in [0, 1], [F, H, W, 3]) as <path>.mp4 and/or <path>.gif.

  MP4 is H.264 in yuv420p (plays in browsers and slide decks) via imageio-ffmpeg's bundled binary;
  odd sizes are padded to even. GIF loops forever at the nearest frame time GIF allows (10 ms steps).

  Returns:
    The paths written, in the order of `formats`.
  """
  formats = tuple(formats)
  unknown = [f for f in formats if f not in VIDEO_FORMATS]
  if unknown:
    raise ValueError(f"video formats must be among {VIDEO_FORMATS}, got {unknown}")
  frames = images.to_uint8(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
    raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got shape {frames.shape}")
  if not fps > 0:
    raise ValueError(f"fps (config.export.video_fps) must be > 0, got {fps}")
  os.makedirs(os.path.dirname(os.path.abspath(path_without_ext)), exist_ok=True)
  paths = []
  for fmt in formats:
    path = f"{path_without_ext}.{fmt}"
    if fmt == "mp4":
      with _spawning_ffmpeg():
        with imageio_v2.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                   pixelformat="yuv420p", quality=8, macro_block_size=1,
                                   output_params=["-movflags", "+faststart"]) as writer:
          for frame in _even(frames):
            writer.append_data(frame)
    else:
      iio.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    paths.append(path)
  return paths


def read_video(path: str) -> np.ndarray:
  """All frames of an MP4 or GIF as uint8 [F, H, W, 3] (for tests and checks)."""
  if path.endswith(".gif"):
    frames = iio.imread(path, index=None, extension=".gif", mode="RGB")
    return np.asarray(frames)
  with _spawning_ffmpeg():
    reader = imageio_v2.get_reader(path, format="FFMPEG")
    try:
      return np.stack([np.asarray(f)[..., :3] for f in reader])
    finally:
      reader.close()
