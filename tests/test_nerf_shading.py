"""The Lambertian model, the three shading modes, and the paper's mode schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from dreamfusion_jax.nerf import shading

ALBEDO = np.array([0.2, 0.4, 0.6], np.float32)


def test_lambertian_formula():
  normal = np.array([0.0, 0.0, 1.0], np.float32)
  light_dir = np.array([1.0, 0.0, 1.0], np.float32) / np.sqrt(2.0)
  got = shading.lambertian(ALBEDO, normal, light_dir, ambient=0.1, diffuse=0.9)
  np.testing.assert_allclose(got, ALBEDO * (0.9 / np.sqrt(2.0) + 0.1), rtol=1e-6)
  # A light behind the surface leaves only the ambient term.
  behind = shading.lambertian(ALBEDO, normal, -light_dir, ambient=0.1, diffuse=0.9)
  np.testing.assert_allclose(behind, 0.1 * ALBEDO, rtol=1e-6)


def _scene(num_views=2, num_points=5, seed=0):
  rng = np.random.default_rng(seed)
  normals = rng.normal(size=(num_views, num_points, 3)).astype(np.float32)
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  points = rng.uniform(-1, 1, size=(num_views, num_points, 3)).astype(np.float32)
  light = rng.uniform(2, 3, size=(num_views, 1, 3)).astype(np.float32)
  albedo = rng.uniform(0, 1, size=(num_views, num_points, 3)).astype(np.float32)
  return albedo, normals, points, light


def test_modes_follow_their_definitions():
  albedo, normals, points, light = _scene()
  to_light = light - points
  cosine = np.maximum(0.0, np.sum(normals * to_light / np.linalg.norm(to_light, axis=-1, keepdims=True),
                                  axis=-1, keepdims=True))
  shade = lambda mode: np.asarray(shading.shade(albedo, normals, points, light, mode, 0.1, 0.9))
  np.testing.assert_allclose(shade(shading.LAMBERTIAN), albedo * (0.9 * cosine + 0.1), rtol=1e-5)
  # Textureless is the shading alone (albedo = 1), replicated over channels.
  np.testing.assert_allclose(shade(shading.TEXTURELESS), np.repeat(0.9 * cosine + 0.1, 3, -1), rtol=1e-5)
  np.testing.assert_allclose(shade(shading.ALBEDO), albedo)


def test_albedo_mode_ignores_the_light():
  albedo, normals, points, light = _scene()
  a = shading.shade(albedo, normals, points, light, shading.ALBEDO, 0.1, 0.9)
  b = shading.shade(albedo, normals, points, -5.0 * light, shading.ALBEDO, 0.1, 0.9)
  np.testing.assert_array_equal(a, b)


def test_per_view_mode_array():
  albedo, normals, points, light = _scene(num_views=3)
  modes = jnp.array([shading.ALBEDO, shading.LAMBERTIAN, shading.TEXTURELESS], jnp.int32)
  got = jax.jit(shading.shade)(albedo, normals, points, light, modes[:, None], 0.1, 0.9)
  for v, mode in enumerate(np.asarray(modes)):
    expected = shading.shade(albedo[v], normals[v], points[v], light[v], int(mode), 0.1, 0.9)
    np.testing.assert_allclose(got[v], expected, rtol=1e-6)


def test_schedule_is_albedo_during_ambient_only_steps():
  config = base.get_config()
  for step in (0, config.shading.ambient_only_steps - 1):
    modes = shading.sample_mode(jax.random.PRNGKey(step), step, 4096, config)
    assert np.all(np.asarray(modes) == shading.ALBEDO)


def test_schedule_frequencies_after_warmup():
  config = base.get_config()
  n = 40000
  step = jnp.asarray(config.shading.ambient_only_steps)  # traced step under jit
  modes = np.asarray(jax.jit(lambda k, s: shading.sample_mode(k, s, n, config))(jax.random.PRNGKey(7), step))
  p_shaded, p_plain = config.shading.shaded_prob, config.shading.textureless_prob
  expected = {shading.ALBEDO: 1.0 - p_shaded, shading.LAMBERTIAN: p_shaded * (1.0 - p_plain),
              shading.TEXTURELESS: p_shaded * p_plain}
  for mode, p in expected.items():
    tolerance = 5.0 * np.sqrt(p * (1.0 - p) / n)  # five standard errors
    assert abs(np.mean(modes == mode) - p) < tolerance, (mode, np.mean(modes == mode), p)


def test_schedule_rejects_bad_probabilities():
  config = base.get_config()
  with config.unlocked():
    config.shading.shaded_prob = 1.5
  with pytest.raises(ValueError, match="shaded_prob"):
    shading.sample_mode(jax.random.PRNGKey(0), 2000, 4, config)
