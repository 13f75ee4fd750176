"""Still images: float renders to uint8, labelled-free grids, PNG files and depth colouring (numpy only)."""

import os
from typing import Sequence, Union

import numpy as np
from PIL import Image

GAP = 2  # pixels between grid cells
GAP_VALUE = 255  # white gaps

# A perceptually ordered ramp (dark blue -> teal -> yellow), sampled from viridis' anchor colours.
_RAMP = np.array([[0.267, 0.005, 0.329], [0.230, 0.322, 0.546], [0.128, 0.567, 0.551],
                  [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]], np.float32)


def to_uint8(img) -> np.ndarray:
  """Float images in [0, 1] (clipped; NaN -> 0) to uint8; uint8 input is returned unchanged."""
  img = np.asarray(img)
  if img.dtype == np.uint8:
    return img
  return np.round(np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_rgb(img: np.ndarray) -> np.ndarray:
  """[..., H, W] or [..., H, W, 1|3] -> [..., H, W, 3]."""
  if img.ndim >= 1 and img.shape[-1] == 3:
    return img
  if img.shape[-1] == 1:
    return np.repeat(img, 3, axis=-1)
  return np.repeat(img[..., None], 3, axis=-1)


def make_grid(rows: Union[Sequence[np.ndarray], np.ndarray]) -> np.ndarray:
  """Tiles images into one uint8 [H', W', 3] grid with GAP-pixel white gaps.

  Args:
    rows: a list of R rows, each [N, H, W, C] (C in 1 or 3) or [N, H, W] greyscale, floats in [0, 1] or
      uint8; or one array [R, N, H, W, 3]. Rows may hold different numbers of images (short rows are
      padded with white); all images share H and W.
  """
  rows = [_as_rgb(to_uint8(r)) for r in rows]
  if not rows or any(r.ndim != 4 for r in rows):
    raise ValueError("rows must be a non-empty list of [N, H, W, C] arrays (or an [R, N, H, W, 3] array)")
  h, w = rows[0].shape[1:3]
  if any(r.shape[1:3] != (h, w) for r in rows):
    raise ValueError(f"all images must be {h}x{w}, got {[r.shape[1:3] for r in rows]}")
  cols = max(r.shape[0] for r in rows)
  grid = np.full((len(rows) * (h + GAP) - GAP, cols * (w + GAP) - GAP, 3), GAP_VALUE, np.uint8)
  for i, row in enumerate(rows):
    for j, img in enumerate(row):
      grid[i * (h + GAP):i * (h + GAP) + h, j * (w + GAP):j * (w + GAP) + w] = img
  return grid


def save_png(path: str, img) -> None:
  """Writes an image ([H, W], [H, W, 1|3|4], float in [0, 1] or uint8) as PNG, creating folders."""
  img = to_uint8(img)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim not in (2, 3):
    raise ValueError(f"save_png needs a [H, W] or [H, W, C] image, got shape {img.shape}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(img).save(path)


def colorize_depth(depth, opacity, threshold: float = 0.5, background: float = 1.0) -> np.ndarray:
  """Depth [..., H, W] to float RGB [..., H, W, 3]: near = bright yellow, far = dark blue.

  Depth is normalised per image over pixels with opacity > threshold, then composited over a flat
  `background` by opacity, so empty space fades out instead of showing the depth of nothing.
  """
  depth = np.asarray(depth, np.float32)
  opacity = np.clip(np.asarray(opacity, np.float32), 0.0, 1.0)
  mask = opacity > threshold
  lo = np.where(mask, depth, np.inf).min(axis=(-2, -1), keepdims=True)
  hi = np.where(mask, depth, -np.inf).max(axis=(-2, -1), keepdims=True)
  empty = ~np.isfinite(lo)
  lo, hi = np.where(empty, 0.0, lo), np.where(empty, 1.0, hi)
  nearness = 1.0 - np.clip((depth - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)
  pos = nearness * (len(_RAMP) - 1)
  i = np.minimum(np.floor(pos).astype(int), len(_RAMP) - 2)
  frac = (pos - i)[..., None]
  color = _RAMP[i] * (1.0 - frac) + _RAMP[i + 1] * frac
  return opacity[..., None] * color + (1.0 - opacity[..., None]) * background
