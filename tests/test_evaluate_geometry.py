"""Geometry score: IoU closed forms and yaw invariance."""

import numpy as np
import pytest

from dreamfusion_jax.evaluate import geometry
from dreamfusion_jax.export import mesh as mesh_lib


def _box(half):
  return lambda p: np.all(np.abs(p) <= half, axis=-1)


def test_iou_of_nested_balls_is_the_volume_ratio():
  bound, res = 1.0, 65
  p = mesh_lib.grid_points(bound, res)
  r = np.linalg.norm(p, axis=-1)
  score = geometry.iou(r <= 0.4, r <= 0.8)
  assert abs(score - 0.125) < 0.01  # (0.4 / 0.8)^3


def test_rotated_box_is_found_at_its_yaw():
  bound, res = 1.0, 49
  p = mesh_lib.grid_points(bound, res)
  half = np.array([0.6, 0.3, 0.2])
  turned = _box(half)(geometry.rotate_y(p, -np.pi / 3))  # the box turned by +60 degrees
  result = geometry.best_yaw_iou(turned, _box(half), bound, num_angles=12)
  assert result["iou"] > 0.9
  # Undoing a +60 degree turn is a -60 (= 300) degree one; the box's 180-degree symmetry allows 120 too.
  assert min(abs(result["yaw_degrees"] - 300.0), abs(result["yaw_degrees"] - 120.0)) < 1e-6
  unturned = geometry.iou(turned, _box(half)(p))
  assert unturned < 0.7, "without the yaw search the score must drop, or the test proves nothing"


def test_nerf_occupancy_of_a_dense_ball_matches_its_radius():
  density_fn = lambda x: np.where(np.linalg.norm(x, axis=-1) <= 0.5, 50.0, 0.0).astype(np.float32)
  occupied = geometry.nerf_occupancy(density_fn, 1.0, 41)
  ball = lambda x: np.linalg.norm(x, axis=-1) <= 0.5
  assert geometry.best_yaw_iou(occupied, ball, 1.0, num_angles=1)["iou"] > 0.95


def test_a_ball_drawn_too_large_is_found_at_its_size():
  bound, res = 1.0, 49
  p = mesh_lib.grid_points(bound, res)
  r = np.linalg.norm(p, axis=-1)
  ball = lambda x: np.linalg.norm(x, axis=-1) <= 0.35
  drawn = r <= 0.35 * 1.3  # the shape right, 30% too large
  at_true_size = geometry.best_yaw_iou(drawn, ball, bound, num_angles=1)["iou"]
  assert abs(at_true_size - 1.3**-3) < 0.05  # nested balls: the volume ratio
  sized = geometry.best_yaw_scale_iou(drawn, ball, bound, num_angles=1)
  assert sized["iou"] > 0.9
  assert abs(np.log(sized["scale"] / 1.3)) <= np.log(2.0) / 16 + 1e-6  # nearest of the 2^(1/8) steps


def test_the_size_search_does_not_rescue_a_wrong_shape():
  bound, res = 1.0, 49
  p = mesh_lib.grid_points(bound, res)
  column = _box(np.array([0.2, 0.8, 0.2]))(p)  # a tall column against a cube of the same width
  sized = geometry.best_yaw_scale_iou(column, _box(np.array([0.2, 0.2, 0.2])), bound, num_angles=4)
  assert sized["iou"] < 0.5  # the best any scale of the cube can do is well under a match
  with pytest.raises(ValueError, match="scales must be positive"):
    geometry.best_yaw_scale_iou(column, _box(0.2), bound, scales=(0.0, 1.0))
