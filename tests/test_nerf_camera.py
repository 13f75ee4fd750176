"""Camera sampling, view labels and rays against the paper's ranges and pinhole geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from dreamfusion_jax.nerf import camera


def _config(**camera_overrides):
  config = base.get_config()
  with config.unlocked():
    config.render.resolution = 8
    for name, value in camera_overrides.items():
      config.camera[name] = value
  return config


def _axis_distance_to_origin(cams):
  """Distance from the world origin to each camera's optical axis (the line along its -z column)."""
  axis = -np.asarray(cams.rotation)[:, :, 2]
  p = np.asarray(cams.position)
  return np.linalg.norm(np.cross(-p, axis), axis=-1)


def test_samples_stay_in_configured_ranges():
  config = _config()
  cam = config.camera
  cams = camera.sample_views(jax.random.PRNGKey(0), 1024, config)
  elevation, azimuth = np.asarray(cams.elevation), np.asarray(cams.azimuth)
  assert elevation.min() >= cam.elevation_range[0] and elevation.max() <= cam.elevation_range[1]
  assert azimuth.min() >= 0.0 and azimuth.max() < 360.0
  lam = np.asarray(cams.focal) / config.render.resolution
  assert lam.min() >= cam.focal_range[0] and lam.max() <= cam.focal_range[1]
  # The jittered centre is within j*sqrt(3) of a point at the sampled distance.
  dist = np.linalg.norm(np.asarray(cams.position), axis=-1)
  slack = cam.position_jitter * np.sqrt(3.0) + 1e-5
  assert dist.min() >= cam.distance_range[0] - slack and dist.max() <= cam.distance_range[1] + slack
  light_ratio = np.linalg.norm(np.asarray(cams.light_position), axis=-1) / dist
  assert light_ratio.min() >= cam.light_distance_range[0] - 1e-5
  assert light_ratio.max() <= cam.light_distance_range[1] + 1e-5
  # The ranges are actually covered, not collapsed to a point.
  assert elevation.max() - elevation.min() > 90.0 and azimuth.max() - azimuth.min() > 340.0


def test_rotations_are_proper_and_cameras_deterministic():
  config = _config()
  a = camera.sample_views(jax.random.PRNGKey(3), 64, config)
  b = camera.sample_views(jax.random.PRNGKey(3), 64, config)
  r = np.asarray(a.rotation)
  np.testing.assert_allclose(np.einsum("bij,bik->bjk", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_optical_axis_passes_through_origin_without_look_at_jitter():
  cams = camera.sample_views(jax.random.PRNGKey(1), 256, _config(look_at_std=0.0))
  np.testing.assert_allclose(_axis_distance_to_origin(cams), 0.0, atol=1e-5)


def test_optical_axis_misses_origin_by_the_look_at_jitter():
  std = 0.2
  cams = camera.sample_views(jax.random.PRNGKey(2), 4096, _config(look_at_std=std))
  d = _axis_distance_to_origin(cams)
  # The axis passes through the look-at point t ~ N(0, std^2 I), so d <= |t|: d^2 / std^2 is bounded by a
  # chi-square(3) variable (99.9% quantile 16.27), and E d^2 < 3 std^2; and it is not zero.
  assert np.mean(d**2 / std**2 > 16.27) < 0.003
  assert 0.8 * std**2 < np.mean(d**2) < 3.0 * std**2


def test_up_vector_keeps_the_horizon_level():
  flat = camera.sample_views(jax.random.PRNGKey(4), 256, _config(look_at_std=0.0, up_std=0.0,
                                                                 position_jitter=0.0))
  right = np.asarray(flat.rotation)[:, :, 0]
  np.testing.assert_allclose(right[:, 1], 0.0, atol=1e-5)  # no roll: right is horizontal
  assert np.all(np.asarray(flat.rotation)[:, 1, 1] >= -1e-6)  # image up never points down
  tilted = camera.sample_views(jax.random.PRNGKey(4), 256, _config())
  assert np.abs(np.asarray(tilted.rotation)[:, 1, 0]).max() < 0.5


@pytest.mark.parametrize("elevation,azimuth,label", [
    (0.0, 0.0, "front"), (0.0, 44.0, "front"), (0.0, 316.0, "front"), (0.0, -30.0, "front"),
    (0.0, 400.0, "front"), (0.0, 46.0, "side"), (0.0, 134.0, "side"), (20.0, 270.0, "side"),
    (0.0, 136.0, "back"), (0.0, 180.0, "back"), (-10.0, 224.0, "back"), (60.0, 0.0, "front"),
    (61.0, 180.0, "overhead"), (90.0, 90.0, "overhead")])
def test_view_label(elevation, azimuth, label):
  assert camera.VIEW_NAMES[int(camera.view_label(elevation, azimuth, 60.0))] == label


def test_sampled_labels_match_their_angles():
  cams = camera.sample_views(jax.random.PRNGKey(5), 512, _config())
  for e, a, v in zip(np.asarray(cams.elevation), np.asarray(cams.azimuth), np.asarray(cams.view)):
    if e > 60.0:
      assert v == camera.OVERHEAD
    else:
      from_front = min(a, 360.0 - a)
      assert v == (camera.FRONT if from_front <= 45 else camera.BACK if abs(a - 180.0) <= 45 else camera.SIDE)


def test_orbit_geometry():
  cams = camera.orbit(8, 6, elevation=30.0, distance=2.0)
  np.testing.assert_allclose(np.asarray(cams.azimuth), np.arange(8) * 45.0)
  p = np.asarray(cams.position)
  np.testing.assert_allclose(np.linalg.norm(p, axis=-1), 2.0, rtol=1e-6)
  np.testing.assert_allclose(np.degrees(np.arcsin(p[:, 1] / 2.0)), 30.0, atol=1e-4)
  np.testing.assert_allclose(_axis_distance_to_origin(cams), 0.0, atol=1e-5)
  front = camera.orbit(1, 6, elevation=0.0, distance=2.0)  # azimuth 0: on +z looking along -z
  np.testing.assert_allclose(np.asarray(front.position[0]), [0.0, 0.0, 2.0], atol=1e-6)
  np.testing.assert_allclose(np.asarray(front.rotation[0]), np.eye(3), atol=1e-6)
  top = camera.orbit(4, 6, elevation=90.0, distance=1.0)  # straight down is still a proper frame
  r = np.asarray(top.rotation)
  assert np.all(np.isfinite(r))
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
  np.testing.assert_allclose(r[:, :, 2], np.broadcast_to([0.0, 1.0, 0.0], (4, 3)), atol=1e-6)


def test_rays_are_unit_and_pass_through_pixel_centres():
  cams = camera.sample_views(jax.random.PRNGKey(6), 3, _config())
  r = camera.rays(cams)
  n = cams.resolution
  assert r.directions.shape == (3, n, n, 3) and r.radii.shape == (3, n, n)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(r.directions), axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(r.origins), np.broadcast_to(
      np.asarray(cams.position)[:, None, None], r.origins.shape), atol=1e-6)
  # Back into the camera frame: the ray hits the image plane z = -1 at the pixel centre / focal.
  local = np.einsum("bji,bhwj->bhwi", np.asarray(cams.rotation), np.asarray(r.directions))
  f = np.asarray(cams.focal)[:, None, None]
  centres = np.arange(n) + 0.5 - n / 2.0
  np.testing.assert_allclose(local[..., 0] / -local[..., 2] * f, np.broadcast_to(centres, (3, n, n)),
                             atol=1e-3)
  np.testing.assert_allclose(local[..., 1] / -local[..., 2] * f,
                             np.broadcast_to(-centres[:, None], (3, n, n)), atol=1e-3)
  assert np.all(local[..., 2] < 0.0)


def test_centre_ray_is_the_optical_axis_with_pixel_radius():
  cams = camera.orbit(2, 5, elevation=10.0, distance=1.5, focal_scale=0.8)
  r = camera.rays(cams)
  np.testing.assert_allclose(np.asarray(r.directions[:, 2, 2]), -np.asarray(cams.rotation)[:, :, 2],
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(r.radii[:, 2, 2]), 2.0 / np.sqrt(12.0) / (0.8 * 5), rtol=1e-5)
  assert np.all(np.asarray(r.radii[:, 0, 0]) < np.asarray(r.radii[:, 2, 2]))  # off-axis pixels subtend less


def test_bad_ranges_raise():
  with pytest.raises(ValueError, match="elevation_range"):
    camera.sample_views(jax.random.PRNGKey(0), 2, _config(elevation_range=(90.0, -10.0)))
  with pytest.raises(ValueError, match="batch_size"):
    camera.sample_views(jax.random.PRNGKey(0), 0, _config())


def test_sample_views_jits():
  config = _config()
  cams = jax.jit(lambda k: camera.sample_views(k, 4, config))(jax.random.PRNGKey(0))
  assert cams.position.shape == (4, 3) and cams.view.dtype == jnp.int32


def test_late_elevations_come_from_their_own_range_from_their_step_on():
  config = _config(late_elevation_step=200, late_elevation_range=(-10.0, 45.0))
  draw = jax.jit(lambda k, s: camera.sample_views(k, 2048, config, s).elevation)
  early, late = np.asarray(draw(jax.random.PRNGKey(0), 199)), np.asarray(draw(jax.random.PRNGKey(0), 200))
  assert early.max() > 80.0 and early.min() >= -10.0  # the whole range until step 199
  assert late.max() <= 45.0 and late.max() > 40.0 and late.min() >= -10.0  # the late one, covered
  # Without a step (tools that sample views outside training) or with the switch at 0: the first range.
  assert np.asarray(camera.sample_views(jax.random.PRNGKey(0), 2048, config).elevation).max() > 80.0
  off = _config(late_elevation_range=(-10.0, 45.0))
  assert np.asarray(camera.sample_views(jax.random.PRNGKey(0), 2048, off, 500).elevation).max() > 80.0
  with pytest.raises(ValueError, match="late_elevation_range"):
    camera.sample_views(jax.random.PRNGKey(0), 2, _config(late_elevation_step=5,
                                                          late_elevation_range=(45.0, -10.0)), 9)
