"""Noise schedule, timestep sampling, weightings and DDIM steps against their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior.testing import GaussianPrior

SD = random_init.SD_SCHEDULER


def test_scaled_linear_betas_are_linear_in_sqrt_beta():
  ab = schedule.alphas_cumprod_from_config(SD)
  betas = 1 - ab / np.concatenate([[1.0], ab[:-1]])
  np.testing.assert_allclose(betas[0], 0.00085, rtol=1e-10)
  np.testing.assert_allclose(betas[-1], 0.012, rtol=1e-10)
  np.testing.assert_allclose(np.diff(np.sqrt(betas), 2), 0.0, atol=1e-12)
  assert ab.shape == (1000,) and np.all(np.diff(ab) < 0)


def test_linear_and_cosine_schedules():
  ab = schedule.alphas_cumprod_from_config({"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02})
  np.testing.assert_allclose(ab, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-12)
  cos = schedule.alphas_cumprod_from_config({"beta_schedule": "squaredcos_cap_v2"})
  f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
  t = np.arange(1, 1001) / 1000
  # Away from the 0.999 cap, ᾱ_t = f(t) / f(0) (Nichol & Dhariwal 2021, Eq. 17).
  np.testing.assert_allclose(cos[:900], (f(t) / f(0))[:900], rtol=1e-9)
  with pytest.raises(ValueError, match="beta_schedule='nope'"):
    schedule.alphas_cumprod_from_config({"beta_schedule": "nope"})


def test_sampled_timesteps_cover_the_inclusive_integer_range():
  t = schedule.sample_timesteps(jax.random.PRNGKey(0), 20000, 0.02, 0.98, 1000)
  assert t.dtype == jnp.int32 and int(t.min()) == 20 and int(t.max()) == 980
  counts = np.bincount(np.asarray(t) - 20, minlength=961)
  assert counts.min() > 0 and abs(counts.mean() - 20000 / 961) < 1e-9
  assert np.abs(np.mean(t) - 500.0) < 5.0  # uniform: mean (20 + 980) / 2


def test_t_max_anneals_linearly():
  lo, hi = schedule.t_range(0, 0.02, 0.5, 0.98, 1500)
  assert float(lo) == pytest.approx(0.02) and float(hi) == pytest.approx(0.98)
  assert float(schedule.t_range(750, 0.02, 0.5, 0.98, 1500)[1]) == pytest.approx(0.74)
  assert float(schedule.t_range(10**6, 0.02, 0.5, 0.98, 1500)[1]) == pytest.approx(0.5)
  assert float(schedule.t_range(0, 0.02, 0.5, 0.98, 0)[1]) == pytest.approx(0.5)  # no annealing
  lo, hi = schedule.t_range(750, 0.02, 0.5, 0.98, 1500)
  t = schedule.sample_timesteps(jax.random.PRNGKey(1), 4000, lo, hi, 1000)
  assert int(t.max()) == 740


def test_weightings():
  ab = jnp.array([0.9, 0.5, 0.1])
  np.testing.assert_allclose(schedule.weighting("sigma2", ab), 1 - ab, rtol=1e-6)
  np.testing.assert_allclose(schedule.weighting("uniform", ab), 1.0)
  np.testing.assert_allclose(schedule.weighting("snr_sqrt", ab), np.sqrt((1 - ab) / ab), rtol=1e-6)
  with pytest.raises(ValueError, match="sigma2, uniform, snr_sqrt"):
    schedule.weighting("sigma", ab)


def test_x0_prediction_inverts_the_forward_process():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0, eps = jax.random.normal(k1, (3, 4, 4, 2)), jax.random.normal(k2, (3, 4, 4, 2))
  ab = jnp.array([0.99, 0.5, 0.02])
  np.testing.assert_allclose(schedule.predict_x0(schedule.add_noise(x0, eps, ab), eps, ab), x0, atol=2e-5)
  # A v-prediction converts back to the ε that made x_t: v = α ε − σ x_0.
  v = jnp.sqrt(ab)[:, None, None, None] * eps - jnp.sqrt(1 - ab)[:, None, None, None] * x0
  np.testing.assert_allclose(schedule.eps_from_v(schedule.add_noise(x0, eps, ab), v, ab), eps, atol=1e-5)


def test_ddim_step_with_the_same_prediction_is_invertible():
  k1, k2 = jax.random.split(jax.random.PRNGKey(2))
  x, eps = jax.random.normal(k1, (2, 4, 4, 3)), jax.random.normal(k2, (2, 4, 4, 3))
  a, b = jnp.array([0.9, 0.3]), jnp.array([0.2, 0.05])
  there = schedule.ddim_step(x, eps, a, b)
  np.testing.assert_allclose(schedule.ddim_step(there, eps, b, a), x, atol=1e-5)
  np.testing.assert_allclose(schedule.ddim_step(x, eps, a, a), x, atol=1e-6)


def _round_trip_error(prior, x0, emb, ticks):
  """max |x0 − denoise(invert(x0))|, both by DDIM through `ticks` with the denoiser re-evaluated."""
  ab = lambda k: schedule.gather(prior.alphas_cumprod, k[None])

  def step(x, pair):
    k, k_next = pair
    return schedule.ddim_step(x, prior.predict_noise(None, x, k[None], emb), ab(k), ab(k_next)), None

  x_top, _ = jax.lax.scan(step, x0, (ticks[:-1], ticks[1:]))
  x, _ = jax.lax.scan(step, x_top, (ticks[::-1][:-1], ticks[::-1][1:]))
  return float(jnp.abs(x_top - x0).max()), float(jnp.abs(x - x0).max())


def test_ddim_inversion_then_denoising_returns_x0_for_an_exact_denoiser():
  """DDIM is Euler on the probability-flow ODE: inverting 0 → 600 and denoising back with the exact
  Gaussian denoiser re-evaluated at every point returns x_0 up to an O(step) discretisation error."""
  prior = GaussianPrior(std=0.5)
  emb = jnp.full((1, 2, 2), 0.3)  # data mean 0.3
  x0 = 0.3 + 0.5 * jax.random.normal(jax.random.PRNGKey(3), (1, 4, 4, 3))
  moved, coarse = _round_trip_error(prior, x0, emb, jnp.asarray(np.linspace(0, 600, 61), jnp.int32))
  _, fine = _round_trip_error(prior, x0, emb, jnp.asarray(np.linspace(0, 600, 201), jnp.int32))
  assert moved > 0.5  # x_600 is far from x_0
  assert fine < 0.04 and coarse / fine > 2.5  # first order: 3.3x fewer steps, ~3.3x the error
