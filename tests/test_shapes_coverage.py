"""The covered-fraction figures behind reg.coverage_max."""

import jax
import numpy as np

from dreamfusion_jax import config_files
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.shapes import coverage
from dreamfusion_jax.shapes import sdf


def test_a_sphere_covers_its_projected_disc_in_every_view():
  d, f, n = 1.3, 1.0, 32
  cams = camera_lib.orbit(4, n, elevation=30.0, distance=d, focal_scale=f)
  r = sdf.SPHERE_RADIUS * sdf.SCALE
  radius_px = f * n * r / np.sqrt(d**2 - r**2)  # tangent cone of a sphere seen from distance d
  np.testing.assert_allclose(coverage.view_coverage("sphere", cams, supersample=4),
                             np.pi * radius_px**2 / n**2, rtol=0.03)


def test_the_shapes_config_cap_sits_above_the_true_objects_typical_coverage():
  config = config_files.load(config_files.SHAPES)
  cams = camera_lib.sample_views(jax.random.PRNGKey(7), 64, config)
  for shape in ("sphere", "cube", "table"):
    covered = coverage.view_coverage(shape, cams)
    assert 0.0 < covered.mean() < config.reg.coverage_max, shape  # a true object barely feels the cap
