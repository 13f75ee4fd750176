"""ISM: DDIM inversion strides, its reversibility, and the closed forms ISM reduces to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax.distill import ism as ism_lib
from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.prior.testing import GaussianPrior


@pytest.fixture(scope="module")
def tiny():
  prior, params = random_init.build_random_prior("tiny-pixel", seed=6)
  emb = text_lib.embed_prompts(prior, params, "a red cube")
  text = text_lib.select(emb, jnp.array([0, 2]), jnp.zeros(2))
  x = 0.5 * jax.random.normal(jax.random.PRNGKey(3), (2, prior.sample_size, prior.sample_size, 3))
  return prior, params, text, x, jax.jit(prior.predict_noise)


def _config(**ism_fields):
  return helpers.loaded_config("ism", **ism_fields)


def _ab(prior, k):
  return schedule.gather(prior.alphas_cumprod, jnp.atleast_1d(jnp.asarray(k)))


def test_inversion_strides_and_round_trip_with_the_same_predictions(tiny):
  """View 0 inverts 0 → 200 → 400 → 450, view 1 inverts 0 → 130: each equals stepping one view at a
  time by hand, and DDIM denoising back with the recorded predictions returns x_0."""
  prior, params, (_, uncond), x, predict = tiny
  s = jnp.array([450, 130])
  invert = jax.jit(lambda x: ism_lib.ddim_invert(prior, params, x, uncond, s, 200, 5, jax.random.PRNGKey(0)))
  x_s, eps_s = invert(x)
  for view, ticks in [(0, [0, 200, 400, 450]), (1, [0, 130])]:
    xv, u = x[view : view + 1], uncond[view : view + 1]
    recorded = []
    for k, k_next in zip(ticks[:-1], ticks[1:]):
      recorded.append(predict(params, xv, jnp.array([k]), u))
      xv = schedule.ddim_step(xv, recorded[-1], _ab(prior, k), _ab(prior, k_next))
    np.testing.assert_allclose(x_s[view], xv[0], rtol=1e-4, atol=1e-5)
    eps_end = predict(params, xv, jnp.array([ticks[-1]]), u)[0]
    np.testing.assert_allclose(eps_s[view], eps_end, rtol=1e-4, atol=1e-5)
    for eps, k, k_prev in zip(recorded[::-1], ticks[::-1][:-1], ticks[::-1][1:]):
      xv = schedule.ddim_step(xv, eps, _ab(prior, k), _ab(prior, k_prev))
    np.testing.assert_allclose(xv[0], x[view], atol=1e-4)


def test_without_interval_ism_is_the_classifier_score(tiny):
  """δ_T = δ_S = 0: s = t, x_s = x_t = α_t x + σ_t ε, and g = w(t)(ε̂_ω − ε_u) = w(t)·ω·(ε_c − ε_u)."""
  prior, params, (cond, uncond), x, predict = tiny
  config = _config(delta_t=0, delta_t_start=0, delta_s=0)
  key = jax.random.PRNGKey(9)
  loss = lambda x: ism_lib.ism(config, prior, params, x, (cond, uncond), key, 0)
  grad, aux = jax.jit(jax.grad(loss, has_aux=True))(x)
  k_draw, k_inv = jax.random.split(key)
  t = schedule.sample_timesteps(k_draw, 2, 0.02, 0.98, 1000)
  ab = schedule.per_sample(_ab(prior, t), x)
  x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * jax.random.normal(k_inv, x.shape)
  classifier = 7.5 * (predict(params, x_t, t, cond) - predict(params, x_t, t, uncond))
  want = jnp.sqrt((1 - ab) / ab) * classifier / 2
  assert float(jnp.linalg.norm(grad - want) / jnp.linalg.norm(want)) < 1e-4
  assert float(aux["delta_t"]) == 0.0


def test_from_the_clean_image_the_target_is_the_prediction_at_x0():
  """s = 0: x_s = x, target ε_φ(x, 0, ∅), and x_t = √ᾱ_t x̂_0(x) + √(1 − ᾱ_t) ε_φ(x, 0, ∅)."""
  prior = GaussianPrior(std=0.5)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  cond, uncond = jnp.full((2, 2, 2), 0.5), jnp.full((2, 2, 2), 0.1)
  t, zero = jnp.array([300, 800]), jnp.zeros(2, jnp.int32)
  key = jax.random.PRNGKey(1)
  g = jax.jit(lambda x: ism_lib.ism_gradient(prior, None, x, cond, uncond, t, zero, key, 7.5, 200, 5))(x)
  eps0 = prior.predict_noise(None, x, zero, uncond)
  x_t = schedule.ddim_step(x, eps0, _ab(prior, zero), _ab(prior, t))
  eps_hat = prior.guided_noise(None, x_t, t, cond, uncond, 7.5)
  ab = schedule.per_sample(_ab(prior, t), x)
  np.testing.assert_allclose(g, jnp.sqrt((1 - ab) / ab) * (eps_hat - eps0), rtol=1e-5, atol=1e-5)


def test_long_intervals_start_from_a_noised_image():
  """s = 900 with 2 strides of 200: LucidDreamer starts at 500 from √ᾱ x + √(1 − ᾱ) ε, then 700, 900."""
  prior = GaussianPrior(std=0.5)
  x, uncond, key = jnp.full((1, 2, 2, 3), 0.7), jnp.full((1, 2, 2), 0.1), jax.random.PRNGKey(4)
  x_s, eps_s = ism_lib.ddim_invert(prior, None, x, uncond, jnp.array([900]), 200, 2, key)
  z = schedule.add_noise(x, jax.random.normal(key, x.shape), _ab(prior, 500))
  for k, k_next in [(500, 700), (700, 900)]:
    eps = prior.predict_noise(None, z, jnp.array([k]), uncond)
    z = schedule.ddim_step(z, eps, _ab(prior, k), _ab(prior, k_next))
  np.testing.assert_allclose(x_s, z, rtol=1e-5, atol=1e-6)
  eps_900 = prior.predict_noise(None, z, jnp.array([900]), uncond)
  np.testing.assert_allclose(eps_s, eps_900, rtol=1e-5, atol=1e-6)


def test_interval_anneals_with_t_max():
  config = _config(delta_t=50, delta_t_start=100, t_anneal_steps=1500)
  assert [int(ism_lib.interval(s, config)) for s in (0, 750, 1500, 9000)] == [100, 75, 50, 50]
  with pytest.raises(ValueError, match="delta_s=-1"):
    ism_lib.ism(_config(delta_s=-1), None, None, jnp.zeros((1, 2, 2, 3)), None, None, 0)
