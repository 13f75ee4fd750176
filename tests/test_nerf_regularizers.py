"""Regularizers and their schedule against closed forms; visualisation helpers' fixed points."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from dreamfusion_jax.nerf import regularizers
from dreamfusion_jax.nerf import vis
from dreamfusion_jax.nerf.render import RenderOutput


def _output(opacity, weights=None, orientation=None, normals=None, depth=None):
  opacity = jnp.asarray(opacity, jnp.float32)
  shape = opacity.shape
  return RenderOutput(
      rgb=jnp.zeros(shape + (3,)), albedo=jnp.zeros(shape + (3,)),
      depth=jnp.zeros(shape) if depth is None else jnp.asarray(depth, jnp.float32),
      opacity=opacity,
      normals=jnp.zeros(shape + (3,)) if normals is None else jnp.asarray(normals, jnp.float32),
      weights=jnp.zeros(shape + (4,)) if weights is None else jnp.asarray(weights, jnp.float32),
      orientation=jnp.zeros(shape) if orientation is None else jnp.asarray(orientation, jnp.float32),
      distortion=jnp.zeros(shape))


def test_opacity_loss():
  o = np.array([[0.0, 0.5], [1.0, 0.25]])
  np.testing.assert_allclose(regularizers.opacity_loss(_output(o)), np.mean(np.sqrt(o**2 + 0.01)), rtol=1e-6)


def test_coverage_loss_caps_each_views_covered_fraction():
  # View 0 covers a quarter of its 4x4 pixels (under the cap: free), view 1 all of them (0.4 over).
  opacity = np.zeros((2, 4, 4))
  opacity[0, :2, :2] = 1.0
  opacity[1] = 1.0
  loss = lambda o: regularizers.coverage_loss(_output(o), 0.6)
  np.testing.assert_allclose(loss(opacity), (0.0 + 0.4) / 2, rtol=1e-6)
  # Its gradient: zero on the view under the cap, 1 / (pixels * views) on every pixel of the other.
  grad = np.asarray(jax.grad(loss)(jnp.asarray(opacity, jnp.float32)))
  assert np.all(grad[0] == 0.0)
  np.testing.assert_allclose(grad[1], 1.0 / (16 * 2), rtol=1e-6)


def test_orientation_loss_is_the_mean_per_ray_term():
  per_ray = np.array([[0.1, 0.3], [0.0, 0.2]])
  np.testing.assert_allclose(regularizers.orientation_loss(_output(np.ones((2, 2)), orientation=per_ray)),
                             0.15, rtol=1e-6)


def test_entropies():
  assert float(regularizers.entropy_loss(_output([0.5, 0.5]))) == pytest.approx(np.log(2.0), rel=1e-5)
  assert float(regularizers.entropy_loss(_output([0.0, 1.0]))) < 1e-3
  uniform = _output([1.0], weights=np.full((1, 4), 0.25))
  assert float(regularizers.entropy_loss(uniform, kind="weights")) == pytest.approx(np.log(4.0), rel=1e-5)
  peaked = _output([1.0], weights=[[0.0, 1.0, 0.0, 0.0]])
  assert float(regularizers.entropy_loss(peaked, kind="weights")) < 1e-3
  with pytest.raises(ValueError, match="entropy"):
    regularizers.entropy_loss(uniform, kind="renyi")
  # Gradients stay finite at the clipped ends.
  g = jax.grad(lambda o: regularizers.entropy_loss(_output(o)))(jnp.array([0.0, 1.0]))
  assert np.all(np.isfinite(g))


def test_orientation_weight_anneal():
  config = base.get_config()
  rg = config.reg
  weight = jax.jit(lambda s: regularizers.orientation_weight(s, config))
  np.testing.assert_allclose(weight(0), rg.orientation_start, rtol=1e-5)
  np.testing.assert_allclose(weight(rg.orientation_anneal_steps), rg.orientation, rtol=1e-5)
  np.testing.assert_allclose(weight(10 * rg.orientation_anneal_steps), rg.orientation, rtol=1e-5)
  # Geometric interpolation: halfway is the geometric mean.
  np.testing.assert_allclose(weight(rg.orientation_anneal_steps // 2),
                             np.sqrt(rg.orientation_start * rg.orientation), rtol=1e-4)
  steps = np.arange(0, rg.orientation_anneal_steps + 1, 250)
  assert np.all(np.diff(np.asarray(jax.vmap(weight)(steps))) > 0)
  with config.unlocked():
    config.reg.orientation_start = 0.0
  np.testing.assert_allclose(regularizers.orientation_weight(rg.orientation_anneal_steps // 2, config),
                             0.5 * rg.orientation, rtol=1e-5)  # linear when starting from zero


@pytest.mark.parametrize("name", regularizers.SCHEDULED)
def test_scheduled_weight_starts_late_and_ramps_linearly(name):
  config = base.get_config()
  with config.unlocked():
    config.reg[name] = 8.0
  weight = jax.jit(lambda s: regularizers.scheduled_weight(s, config, name))
  assert float(weight(0)) == 8.0  # base.py: from the first step, at once
  with config.unlocked():
    config.reg[f"{name}_start"], config.reg[f"{name}_ramp_steps"] = 100, 4
  weight = jax.jit(lambda s: regularizers.scheduled_weight(s, config, name))
  np.testing.assert_allclose(jax.vmap(weight)(jnp.arange(98, 106)), [0, 0, 2, 4, 6, 8, 8, 8])
  with pytest.raises(ValueError, match="scheduled regularizer"):
    regularizers.scheduled_weight(0, config, "opacity")


def test_normal_image():
  out = _output([[1.0, 0.0]], normals=[[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
  np.testing.assert_allclose(vis.normal_image(out, background=1.0), [[[0.5, 0.5, 1.0], [1.0, 1.0, 1.0]]])


def test_depth_image_orders_near_to_far():
  out = _output([[1.0, 1.0, 1.0, 0.0]], depth=[[1.0, 2.0, 3.0, 0.0]])
  np.testing.assert_allclose(vis.depth_image(out, background=1.0), [[0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_distortion_loss_is_the_mean_of_the_rays_distortion():
  out = _output(np.zeros((2, 3))).replace(distortion=jnp.asarray([[0.1, 0.2, 0.3], [0.0, 0.0, 0.6]]))
  np.testing.assert_allclose(float(regularizers.distortion_loss(out)), 1.2 / 6, rtol=1e-6)
