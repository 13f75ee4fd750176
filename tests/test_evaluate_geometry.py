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


def test_volume_errors_split_a_misplaced_box_into_known_slabs():
  bound, res = 1.0, 41  # cell 0.05: the boxes below lie on cell boundaries
  p = mesh_lib.grid_points(bound, res)
  y = p[..., 1]
  half = np.array([0.3, 0.3, 0.1])  # not square from above, so a quarter turn shows
  truth_fn = _box(half)
  # The true box moved down by 0.1 (a slab missing on top, one extra below), plus a side blob.
  drawn = _box(half)(p + np.array([0.0, 0.1, 0.0]))
  blob = (np.abs(p[..., 0] - 0.5) <= 0.05) & (np.abs(y) <= 0.05) & (np.abs(p[..., 2]) <= 0.05)
  drawn = drawn | blob
  errors = geometry.volume_errors(drawn, truth_fn, bound, yaw_degrees=0.0)
  truth = truth_fn(p)
  cells_y = np.unique(y[truth]).size  # 13 layers of cells from -0.3 to 0.3
  assert errors["missing"] == pytest.approx(2 / cells_y)  # the top two layers (y = 0.25, 0.3)
  assert errors["extra_below"] == pytest.approx(2 / cells_y)  # y = -0.35, -0.4
  assert errors["extra_above"] == 0.0
  assert errors["extra_beside"] == pytest.approx(blob.sum() / truth.sum())
  # The split determines the IoU: IoU = (1 - missing) / (1 + extras).
  iou = geometry.iou(drawn, truth)
  extras = errors["extra_below"] + errors["extra_beside"] + errors["extra_above"]
  assert iou == pytest.approx((1 - errors["missing"]) / (1 + extras))
  # Turned about the vertical axis, the split is read at the yaw the search finds.
  turned = _box(half)(geometry.rotate_y(p, -np.pi / 2) + np.array([0.0, -0.1, 0.0]))  # moved up instead
  found = geometry.best_yaw_scale_iou(turned, truth_fn, bound, num_angles=4, scales=(1.0,))
  at_yaw = geometry.volume_errors(turned, truth_fn, bound, found["true_size_yaw_degrees"])
  assert at_yaw["extra_above"] == pytest.approx(2 / cells_y) and at_yaw["extra_below"] == 0.0
  assert at_yaw["extra_beside"] == 0.0, "at the found yaw the box's sides line up"
  unaligned = geometry.volume_errors(turned, truth_fn, bound, yaw_degrees=0.0)
  assert unaligned["extra_beside"] > 0.5, "at another yaw they do not, or the yaw proves nothing"


def test_a_box_off_its_place_is_found_at_its_offset():
  bound, res = 0.9, 64
  p = mesh_lib.grid_points(bound, res)
  cell = 2.0 * bound / (res - 1)
  half = np.array([0.3, 0.2, 0.25])
  moved = _box(half)(p - np.array([2, -3, 1]) * cell)  # the right box, 2 / -3 / 1 cells off the origin
  in_place = geometry.best_yaw_iou(moved, _box(half), bound, num_angles=1)["iou"]
  assert in_place < 0.6, "off its place the score must drop, or the test proves nothing"
  placed = geometry.best_position_iou(moved, _box(half), bound, yaw_degrees=0.0)
  assert placed["iou"] == 1.0
  assert placed["offset"] == pytest.approx([2 * cell, -3 * cell, cell])


def test_the_position_search_is_bounded_and_turns_the_truth_by_the_yaw():
  bound, res = 0.9, 64
  p = mesh_lib.grid_points(bound, res)
  cell = 2.0 * bound / (res - 1)
  half = np.array([0.4, 0.15, 0.1])
  reach = int(geometry.MAX_OFFSET / cell)
  far = _box(half)(p - np.array([0.0, reach + 3, 0.0]) * cell)  # farther up than the search reaches
  placed = geometry.best_position_iou(far, _box(half), bound, yaw_degrees=0.0)
  assert placed["iou"] < 1.0 and placed["offset"][1] == pytest.approx(reach * cell)
  # The box turned by +90 degrees and moved: found only with the truth turned back.
  turned = _box(half)(geometry.rotate_y(p - np.array([cell, 0.0, -2 * cell]), -np.pi / 2))
  assert geometry.best_position_iou(turned, _box(half), bound, yaw_degrees=270.0)["iou"] == 1.0
  assert geometry.best_position_iou(turned, _box(half), bound, yaw_degrees=0.0)["iou"] < 0.5


def test_shifted_moves_without_wrapping_around():
  grid = np.zeros((4, 4, 4), bool)
  grid[3, 0, 1] = True
  assert geometry.shifted(grid, (1, 0, 0)).sum() == 0, "moved off the edge, not onto the other side"
  moved = geometry.shifted(grid, (-2, 3, 1))
  assert moved.sum() == 1 and moved[1, 3, 2]
