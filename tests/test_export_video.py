"""Turntable rendering (against an analytic ray-traced ball) and video files read back."""

import subprocess
import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.export import video
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.nerf import shading

RADIUS = 0.5
RED, BLUE, GREY = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.2, 0.9]), np.array([0.6, 0.6, 0.6])


def analytic_ball(albedo_fn, calls=None):
  """render_fn ray-tracing an opaque ball of RADIUS at the origin on a white background."""

  def render_fn(cameras, mode):
    if calls is not None:
      calls.append((cameras.focal.shape[0], mode))
    rays = camera_lib.rays(cameras)
    o, d = rays.origins, rays.directions
    b = jnp.sum(o * d, -1)
    disc = b**2 - (jnp.sum(o * o, -1) - RADIUS**2)
    hit = disc > 0
    t = jnp.where(hit, -b - jnp.sqrt(jnp.maximum(disc, 0.0)), 0.0)
    points = o + t[..., None] * d
    normals = points / RADIUS
    to_light = cameras.light_position[:, None, None, :] - points
    to_light = to_light / jnp.linalg.norm(to_light, axis=-1, keepdims=True)
    albedo = albedo_fn(points) if mode != shading.TEXTURELESS else jnp.ones_like(points)
    lit = albedo * (0.9 * jnp.maximum(0.0, jnp.sum(normals * to_light, -1, keepdims=True)) + 0.1)
    opacity = hit.astype(jnp.float32)
    over = lambda c: opacity[..., None] * c + (1 - opacity[..., None])  # white background
    return types.SimpleNamespace(rgb=over(lit), albedo=over(albedo_fn(points)), depth=t,
                                 opacity=opacity, normals=normals * opacity[..., None])
  return render_fn


def uniform(points):
  return jnp.broadcast_to(jnp.asarray(GREY, jnp.float32), points.shape)


def two_tone(points):
  return jnp.where(points[..., :1] > 0, jnp.asarray(RED, jnp.float32), jnp.asarray(BLUE, jnp.float32))


def test_symmetric_ball_gives_identical_frames_except_world_normals():
  calls = []
  frames = video.render_turntable(analytic_ball(uniform, calls), num_frames=6, resolution=24,
                                  elevation=15.0, distance=1.6, chunk=4)
  # 6 frames in chunks of 4: two calls per pass, the last one padded to 4 views (one compile).
  assert calls == [(4, shading.LAMBERTIAN), (4, shading.TEXTURELESS)] * 2
  for mode in ("albedo", "shaded", "textureless", "depth"):
    f = frames[mode].astype(int)
    assert f.shape == (6, 24, 24, 3) and frames[mode].dtype == np.uint8
    assert np.abs(f - f[:1]).max() <= 2, mode
  assert np.abs(frames["albedo"][:, 12, 12] / 255.0 - GREY).max() < 0.01
  # World normals turn with the camera: the centre pixel shows the direction to the camera.
  cameras = camera_lib.orbit(6, 24, 15.0, 1.6)
  towards_camera = np.asarray(cameras.position) / 1.6
  np.testing.assert_allclose(frames["normals"][:, 12, 12] / 255.0, (towards_camera + 1) / 2, atol=0.06)
  # Background is white in every mode.
  for mode, f in frames.items():
    assert (f[:, 0, 0] == 255).all(), mode


def test_asymmetric_ball_changes_with_azimuth():
  frames = video.render_turntable(analytic_ball(two_tone), num_frames=4, resolution=24,
                                  elevation=0.0, distance=1.6, chunk=4, modes=("albedo", "textureless"))
  assert set(frames) == {"albedo", "textureless"}
  centre = frames["albedo"][:, 12, 12] / 255.0
  # Azimuth 90 looks from +x (red half), azimuth 270 from -x (blue half).
  np.testing.assert_allclose(centre[1], RED, atol=0.01)
  np.testing.assert_allclose(centre[3], BLUE, atol=0.01)
  assert np.abs(frames["albedo"][1].astype(int) - frames["albedo"][3]).mean() > 30
  # Geometry is still a ball: the textureless frames do not change.
  assert np.abs(frames["textureless"].astype(int) - frames["textureless"][:1]).max() <= 2


def _frames(num, height, width):
  """Frames of flat colours that differ per frame, with a bright square so content is not uniform."""
  f = np.zeros((num, height, width, 3), np.uint8)
  for i in range(num):
    f[i] = (30 + 40 * i, 220 - 30 * i, 100)
    f[i, : height // 2, : width // 2] = 250
  return f


@pytest.mark.parametrize("size", [(32, 48), (33, 47)])
def test_write_and_read_back_mp4_and_gif(tmp_path, size):
  frames = _frames(6, *size)
  paths = video.write_video(str(tmp_path / "out" / "clip"), frames, fps=12)
  assert [p[-3:] for p in paths] == ["mp4", "gif"]
  even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
  for path, expected_size in zip(paths, (even, size)):
    back = video.read_video(path)
    assert back.shape == (6,) + expected_size + (3,), path
    crop = back[:, : size[0], : size[1]].astype(float)
    # Lossy codecs: per-frame mean colour within a few levels, per-frame ordering preserved.
    np.testing.assert_allclose(crop.mean(axis=(1, 2)), frames.mean(axis=(1, 2)), atol=4)
    np.testing.assert_allclose(crop[:, -4:, -4:].mean(axis=(1, 2)), frames[:, -4:, -4:].mean(axis=(1, 2)),
                               atol=6)


def _with_fork_warnings(fn):
  """(fn(), the RuntimeWarnings about os.fork that the call let through to its caller)."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fn()
  return result, [str(w.message) for w in caught
                  if issubclass(w.category, RuntimeWarning) and "os.fork" in str(w.message)]


def test_ffmpeg_spawn_does_not_warn_of_a_fork_deadlock(tmp_path):
  jax.devices()  # JAX installs its at-fork warning with its backends
  # Control: a child started from this process does raise JAX's warning when subprocess runs Python's
  # at-fork hooks, which it does when given a preexec_fn, as imageio-ffmpeg gives os.setpgrp.
  _, control = _with_fork_warnings(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True,
                                                          preexec_fn=lambda: None))
  assert control, "JAX no longer warns at fork: this test would check nothing"
  (path,), written = _with_fork_warnings(
      lambda: video.write_video(str(tmp_path / "w"), _frames(3, 16, 16), fps=10, formats=("mp4",)))
  frames, read = _with_fork_warnings(lambda: video.read_video(path))
  assert not written and not read, written + read
  assert frames.shape == (3, 16, 16, 3)


def test_float_frames_and_bad_arguments(tmp_path):
  (path,) = video.write_video(str(tmp_path / "f"), _frames(3, 16, 16) / 255.0, fps=10, formats=("gif",))
  assert video.read_video(path).shape == (3, 16, 16, 3)
  with pytest.raises(ValueError, match="video formats"):
    video.write_video(str(tmp_path / "x"), _frames(2, 8, 8), fps=10, formats=("avi",))
  with pytest.raises(ValueError, match="video_fps"):
    video.write_video(str(tmp_path / "x"), _frames(2, 8, 8), fps=0)
  with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
    video.write_video(str(tmp_path / "x"), np.zeros((8, 8, 3), np.uint8), fps=10)
  with pytest.raises(ValueError, match="turntable modes"):
    video.render_turntable(None, 4, 8, 0.0, 1.0, modes=("rgb",))
