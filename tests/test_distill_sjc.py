"""SJC: PAAS through the VE denoiser is the SDS residual over σ, it ascends the density, and the
regularizers match their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax.distill import sds as sds_lib
from dreamfusion_jax.distill import sjc as sjc_lib
from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.prior.testing import GaussianPrior


def _config(num_steps=15000, **sjc_fields):
  sjc_fields.setdefault("weighting", "none")  # the paper's score; tests of "sigma" say so
  config = helpers.loaded_config("sjc", **sjc_fields)
  config.num_steps = num_steps
  return config


def _draws(key, x, config, n):
  """The t and perturbations sjc() draws from `key`."""
  k_t, k_n = jax.random.split(key)
  t = sjc_lib.sample_ticks(k_t, x.shape[0], config, 1000)
  return t, jax.random.normal(k_n, (n,) + x.shape)


def test_gradient_is_the_uniform_sds_residual_over_sigma():
  """(D(x + σn, σ) − x)/σ² = (n − ε̂)/σ with D from the UNet fed α_t(x + σn) = α_t x + σ_t n: the SJC
  descent gradient is the SDS residual ε̂ − n (uniform weighting, same t and noise) divided by the VE σ,
  averaged over the perturbations, / B."""
  prior, params = random_init.build_random_prior("tiny-pixel", seed=4)
  emb = text_lib.embed_prompts(prior, params, "a red cube")
  cond, uncond = text_lib.select(emb, jnp.array([0, 1]), jnp.zeros(2))
  x = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (2, prior.sample_size, prior.sample_size, 3))
  config, key = _config(num_perturb=2), jax.random.PRNGKey(5)
  loss = lambda x: sjc_lib.sjc(config, prior, params, x, (cond, uncond), key, 0)
  grad, aux = jax.jit(jax.grad(loss, has_aux=True))(x)

  t, noise = _draws(key, x, config, 2)
  assert 30 <= int(t.min()) and int(t.max()) < 990
  stack = lambda a: jnp.concatenate([a, a])
  sds_residual = jax.jit(sds_lib.sds_gradient, static_argnums=(0,) + tuple(range(7, 9)))(
      prior, params, stack(x), stack(cond), stack(uncond), stack(t), noise.reshape((4,) + x.shape[1:]),
      100.0, "uniform").reshape(noise.shape)
  sigma = sjc_lib.ve_sigma(jnp.asarray(prior.alphas_cumprod, jnp.float32)[t])
  want = jnp.mean(sds_residual, axis=0) / schedule.per_sample(sigma, x) / 2
  assert float(jnp.linalg.norm(grad - want) / jnp.linalg.norm(want)) < 1e-4
  assert float(aux["t"]) == pytest.approx(float(jnp.mean(t)) / 1000)


def test_score_of_gaussian_data_ascends_towards_the_mean():
  """Data N(μ, s²): D(z, σ) = μ + s²(z − μ)/(s² + σ²), so the PAAS estimate is exactly
  (μ − x)/(s² + σ²) + s² n̄ / (σ(s² + σ²)) — pointing from x towards μ, plus the mean noise."""
  prior, mu, s2 = GaussianPrior(std=0.5), 0.3, 0.25
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 4, 3))
  text = (jnp.full((3, 2, 2), mu), jnp.full((3, 2, 2), mu))
  config, key = _config(num_perturb=3), jax.random.PRNGKey(2)
  grad, _ = jax.jit(jax.grad(lambda x: sjc_lib.sjc(config, prior, None, x, text, key, 0), has_aux=True))(x)
  t, noise = _draws(key, x, config, 3)
  sigma = schedule.per_sample(sjc_lib.ve_sigma(jnp.asarray(prior.alphas_cumprod, jnp.float32)[t]), x)
  score = (mu - x) / (s2 + sigma**2) + s2 * jnp.mean(noise, 0) / (sigma * (s2 + sigma**2))
  assert float(jnp.linalg.norm(-grad * 3 - score) / jnp.linalg.norm(score)) < 1e-4

  sigma_weighted = _config(num_perturb=3, weighting="sigma")
  grad_sigma, _ = jax.jit(jax.grad(
      lambda x: sjc_lib.sjc(sigma_weighted, prior, None, x, text, key, 0), has_aux=True))(x)
  np.testing.assert_allclose(grad_sigma, grad * sigma, rtol=1e-4, atol=1e-7)  # SJC's code: (D − x)/σ


def test_bad_tick_range_and_weighting_are_refused():
  with pytest.raises(ValueError, match="tick_min"):
    sjc_lib.sample_ticks(jax.random.PRNGKey(0), 1, _config(tick_min=995), 1000)
  with pytest.raises(ValueError, match="weighting='score'"):
    sjc_lib.sjc(_config(weighting="score"), None, None, jnp.zeros((1, 2, 2, 3)), None, None, 0)


def test_emptiness_loss_and_its_ramp():
  w = jnp.array([[0.0, 0.1], [0.5, 1.0]])
  config = _config(num_steps=100, emptiness_weight=2.0, emptiness_ramp=20.0)
  want = 2.0 * np.mean(np.log(1 + 10 * np.asarray(w)))
  assert float(sjc_lib.emptiness_loss(w, 49, config)) == pytest.approx(want, rel=1e-6)
  assert float(sjc_lib.emptiness_loss(w, 50, config)) == pytest.approx(20 * want, rel=1e-6)
  assert float(sjc_lib.emptiness_loss(jnp.zeros((4, 4)), 0, config)) == 0.0


def test_center_depth_loss():
  """An object in the centre (opacity 1, depth 2) and nothing on the border: −log(2)."""
  depth = jnp.full((2, 64, 64), 2.0)
  opacity = jnp.zeros((2, 64, 64)).at[:, 7:-7, 7:-7].set(1.0)
  assert float(sjc_lib.center_depth_loss(depth, opacity)) == pytest.approx(-np.log(2.0), rel=1e-6)
  # Channel-last inputs read the same; an object on the border only is finite and costs more.
  assert float(sjc_lib.center_depth_loss(depth[..., None], opacity[..., None])) == pytest.approx(-np.log(2.0))
  border_only = 1.0 - opacity
  assert np.isfinite(float(sjc_lib.center_depth_loss(depth, border_only)))
  assert float(sjc_lib.center_depth_loss(depth, border_only)) > 10.0
  g = jax.grad(lambda o: sjc_lib.center_depth_loss(depth, o))(0.5 * jnp.ones((2, 64, 64)) + opacity * 0.25)
  assert float(g[0, 32, 32]) < 0 < float(g[0, 0, 0])  # more centre, less border
