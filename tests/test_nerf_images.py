"""Image export helpers: uint8 conversion, grids with gaps, PNG round trips, depth colouring."""

import numpy as np
from PIL import Image
import pytest

from dreamfusion_jax.export import images


def test_to_uint8():
  np.testing.assert_array_equal(images.to_uint8(np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan])),
                                [0, 0, 128, 255, 255, 0])
  u = np.arange(5, dtype=np.uint8)
  assert images.to_uint8(u) is u


def test_make_grid_layout():
  h, w, gap = 3, 4, images.GAP
  row0 = np.stack([np.full((h, w, 3), v) for v in (0.0, 0.2, 0.4)])
  row1 = np.stack([np.full((h, w), v) for v in (0.6, 0.8)])  # greyscale, one image fewer
  grid = images.make_grid([row0, row1])
  assert grid.shape == (2 * h + gap, 3 * w + 2 * gap, 3) and grid.dtype == np.uint8
  for i, row in enumerate((row0, row1)):
    for j in range(len(row)):
      cell = grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w]
      assert np.all(cell == images.to_uint8(row[j].reshape(h, w, -1)[..., :1]))
  assert np.all(grid[h:h + gap] == images.GAP_VALUE)  # the gap between rows
  assert np.all(grid[:, w:w + gap] == images.GAP_VALUE)  # between columns
  assert np.all(grid[h + gap:, 2 * (w + gap):] == images.GAP_VALUE)  # the missing cell is padding
  stacked = images.make_grid(np.zeros((2, 3, h, w, 3)))  # one [R, C, H, W, 3] array
  assert stacked.shape == grid.shape
  with pytest.raises(ValueError, match="must be"):
    images.make_grid([np.zeros((1, 3, 4, 3)), np.zeros((1, 5, 4, 3))])


def test_save_png_round_trip(tmp_path):
  img = np.random.default_rng(0).uniform(size=(5, 6, 3))
  path = str(tmp_path / "sub" / "x.png")
  images.save_png(path, img)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), images.to_uint8(img))


def test_colorize_depth():
  depth = np.array([[1.0, 2.0, 3.0, 9.0]])
  opacity = np.array([[1.0, 1.0, 1.0, 0.0]])
  rgb = images.colorize_depth(depth, opacity)
  luminance = rgb @ np.array([0.299, 0.587, 0.114])
  assert rgb.shape == (1, 4, 3)
  assert luminance[0, 0] > luminance[0, 1] > luminance[0, 2]  # near is bright
  np.testing.assert_allclose(rgb[0, 3], 1.0)  # empty pixels show the background
  np.testing.assert_allclose(rgb[0, 2], images._RAMP[0], atol=1e-6)  # farthest foreground: ramp start
