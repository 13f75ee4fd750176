"""Geometry score against ground truth: IoU of occupancy, maximised over rotations about the up axis.

A text prompt fixes a shape, not its orientation about the vertical (+y) axis, and a NeRF distilled
from "a cube" may come out turned by any yaw; so the score is the best IoU over a set of yaw angles.
The NeRF's occupancy is its density above the level whose iso-surface has the rendered silhouettes
(`export.mesh.auto_level`), the same surface the exported mesh shows.
"""

from typing import Callable

import numpy as np

from dreamfusion_jax.export import mesh as mesh_lib


def rotate_y(points: np.ndarray, angle: float) -> np.ndarray:
  """Points [..., 3] rotated by `angle` radians about +y (right-handed: +z turns towards +x)."""
  c, s = np.cos(angle), np.sin(angle)
  x, y, z = points[..., 0], points[..., 1], points[..., 2]
  return np.stack([c * x + s * z, y, -s * x + c * z], axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
  """Intersection over union of two boolean grids (1.0 when both are empty)."""
  union = np.logical_or(a, b).sum()
  return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def nerf_occupancy(density_fn: Callable, bound: float, resolution: int, level=None) -> np.ndarray:
  """Boolean [R, R, R] grid (on `mesh.grid_points`) of where the NeRF is solid."""
  density = mesh_lib.density_grid(density_fn, bound, resolution)
  if level is None or level <= 0:
    level = mesh_lib.auto_level(density, 2.0 * bound / (resolution - 1))
  return density > level


def best_yaw_iou(occupied: np.ndarray, truth_fn: Callable, bound: float, num_angles: int = 24) -> dict:
  """Best IoU of `occupied` (a grid on mesh.grid_points) against truth_fn(points) over yaw angles.

  truth_fn: points [..., 3] -> bool, the ground-truth occupancy in the object's canonical pose.
  Returns {"iou": best, "yaw_degrees": the rotation of the grid points that aligns them with truth}.
  """
  points = mesh_lib.grid_points(bound, occupied.shape[0])
  best, best_angle = -1.0, 0.0
  for angle in np.linspace(0.0, 2 * np.pi, num_angles, endpoint=False):
    truth = np.asarray(truth_fn(rotate_y(points, angle)), bool)
    score = iou(occupied, truth)
    if score > best:
      best, best_angle = score, angle
  return {"iou": best, "yaw_degrees": float(np.rad2deg(best_angle))}
