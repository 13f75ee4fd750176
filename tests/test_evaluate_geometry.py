"""Geometry score: IoU closed forms and yaw invariance."""

import numpy as np

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
