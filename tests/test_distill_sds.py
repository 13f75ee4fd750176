"""SDS: the surrogate's gradient is exactly w(t)(ε̂ − ε)/B, and guidance is one stacked UNet call."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax import config_check
from dreamfusion_jax.distill import sds as sds_lib
from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.prior.stable_diffusion import Prior
from dreamfusion_jax.prior.testing import GaussianPrior


@pytest.fixture(scope="module")
def tiny():
  """A tiny pixel prior, two views of one prompt, and an image in model space."""
  prior, params = random_init.build_random_prior("tiny-pixel", seed=2)
  emb = text_lib.embed_prompts(prior, params, "a red cube")
  text = text_lib.select(emb, jnp.array([0, 2]), jnp.zeros(2))
  x = 0.5 * jax.random.normal(jax.random.PRNGKey(3), (2, prior.sample_size, prior.sample_size, 3))
  return prior, params, text, x


def _config(**sds_fields):
  return helpers.loaded_config("sds", **sds_fields)


def _relative_error(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_gradient_is_the_weighted_noise_residual(tiny):
  prior, params, (cond, uncond), x = tiny
  config, key = _config(), jax.random.PRNGKey(7)
  loss = lambda x: sds_lib.sds(config, prior, params, x, (cond, uncond), key, 0)
  grad, aux = jax.jit(jax.grad(loss, has_aux=True))(x)

  # Redo it by hand: the same draws, two separate UNet calls, the paper's formula, mean over views.
  t, eps = surrogate.draw_t_and_noise(key, x, 0.02, 0.98, prior.num_train_timesteps)
  ab = schedule.per_sample(jnp.asarray(prior.alphas_cumprod, jnp.float32)[t], x)
  x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * eps
  predict = jax.jit(prior.predict_noise)
  eps_c, eps_u = predict(params, x_t, t, cond), predict(params, x_t, t, uncond)
  eps_hat = eps_u + 100.0 * (eps_c - eps_u)
  want = (1 - ab) * (eps_hat - eps) / x.shape[0]
  assert _relative_error(grad, want) < 1e-4
  assert float(aux["t"]) == pytest.approx(float(jnp.mean(t)) / 1000)
  per_view = jnp.sqrt(jnp.sum(jnp.square(want * x.shape[0]), axis=(1, 2, 3)))
  assert float(aux["grad_norm"]) == pytest.approx(float(jnp.mean(per_view)), rel=1e-4)


def test_guidance_is_one_stacked_call_without_gradient(tiny):
  prior, params, (cond, uncond), x = tiny
  t = jnp.array([50, 900])
  guided = jax.jit(lambda x: prior.guided_noise(params, x, t, cond, uncond, 7.5))
  predict = jax.jit(prior.predict_noise)
  eps_c, eps_u = predict(params, x, t, cond), predict(params, x, t, uncond)
  assert _relative_error(guided(x), eps_u + 7.5 * (eps_c - eps_u)) < 1e-5

  calls = []

  @dataclasses.dataclass(frozen=True, eq=False)
  class Counting(Prior):
    def predict_noise(self, params, x_t, t, emb, camera=None):
      calls.append(x_t.shape[0])
      return super().predict_noise(params, x_t, t, emb, camera)

  counting = Counting(**{f.name: getattr(prior, f.name) for f in dataclasses.fields(Prior)})
  jax.eval_shape(lambda x: counting.guided_noise(params, x, t, cond, uncond, 7.5), x)
  assert calls == [2 * x.shape[0]]  # [cond; uncond] in one batch
  zero = jax.jit(jax.grad(lambda x: jnp.sum(prior.guided_noise(params, x, t, cond, uncond, 7.5))))(x)
  assert float(jnp.abs(zero).max()) == 0.0  # the UNet is never differentiated


MU, STD = 0.3, 0.5  # the Gaussian prior's data mean (its text embedding) and standard deviation


def _gaussian_case(shape):
  """GaussianPrior, an image x of `shape`, and text whose cond and uncond both name its mean."""
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  text = (jnp.full((shape[0], 2, 2), MU), jnp.full((shape[0], 2, 2), MU))
  return GaussianPrior(std=STD), x, text


def _exact_residual(prior, x, t, eps, weighting="sigma2"):
  """w(t)(ε̂ − ε) with the Gaussian's closed-form ε̂ (guidance changes nothing there: ε_c = ε_u)."""
  ab = schedule.per_sample(jnp.asarray(prior.alphas_cumprod, jnp.float32)[t], x)
  x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * eps
  eps_hat = jnp.sqrt(1 - ab) * (x_t - jnp.sqrt(ab) * MU) / (ab * STD**2 + 1 - ab)
  w = {"uniform": jnp.ones_like(ab), "snr_sqrt": jnp.sqrt((1 - ab) / ab), "sigma2": 1 - ab}[weighting]
  return w * (eps_hat - eps)


@pytest.mark.parametrize("weighting", ["uniform", "snr_sqrt", "sigma2"])
def test_weightings_with_an_exact_denoiser(weighting):
  """With the Gaussian denoiser ε̂ is known in closed form, so every weighting is checked exactly."""
  prior, x, text = _gaussian_case((3, 4, 4, 3))
  config, key = _config(weighting=weighting), jax.random.PRNGKey(1)
  grad, _ = jax.jit(jax.grad(lambda x: sds_lib.sds(config, prior, None, x, text, key, 0), has_aux=True))(x)
  t, eps = surrogate.draw_t_and_noise(key, x, 0.02, 0.98, 1000)
  # Guidance 100 multiplies float32 rounding of ε_c − ε_u (here equal) by 100: compare in norm.
  assert _relative_error(grad, _exact_residual(prior, x, t, eps, weighting) / 3) < 1e-4


def test_timesteps_follow_the_annealed_range():
  prior = GaussianPrior()
  config = _config(t_min=0.1, t_max=0.3, t_max_start=0.9, t_anneal_steps=1000)
  x, text = jnp.zeros((1, 2, 2, 3)), (jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 2)))
  t_of = lambda key, step: sds_lib.sds(config, prior, None, x, text, key, step)[1]["t"]
  keys = jax.random.split(jax.random.PRNGKey(0), 512)
  for step, t_max in [(0, 0.9), (500, 0.6), (1000, 0.3), (5000, 0.3)]:
    t = jax.jit(jax.vmap(t_of, in_axes=(0, None)))(keys, step)
    assert float(t.min()) >= 0.1 and float(t.max()) <= t_max + 1e-6 and float(t.max()) > t_max - 0.02


def test_bad_weighting_is_refused_before_tracing():
  with pytest.raises(ValueError, match="weighting='nope'"):
    sds_lib.sds(_config(weighting="nope"), None, None, jnp.zeros((1, 2, 2, 3)), None, None, 0)


def test_num_samples_averages_independent_draws():
  prior, x, text = _gaussian_case((2, 2, 2, 3))
  config, key = _config(num_samples=3), jax.random.PRNGKey(5)
  grad, aux = jax.jit(jax.grad(lambda x: sds_lib.sds(config, prior, None, x, text, key, 0), has_aux=True))(x)
  # The draws of x tiled three times: sample k of view b is row k·B + b.
  tiled = jnp.concatenate([x] * 3)
  t, eps = surrogate.draw_t_and_noise(key, tiled, 0.02, 0.98, 1000)
  per_draw = _exact_residual(prior, tiled, t, eps).reshape((3,) + x.shape)
  assert len(set(t.tolist())) > 2  # the draws differ in t, not only in ε
  assert _relative_error(grad, jnp.mean(per_draw, axis=0) / x.shape[0]) < 1e-4
  assert float(aux["t"]) == pytest.approx(float(jnp.mean(t)) / 1000)
  # Each single draw is a different gradient: the mean is not any one of them.
  assert min(_relative_error(grad, g / x.shape[0]) for g in per_draw) > 0.05


def test_num_samples_divides_the_variance():
  """K independent draws: the same expected gradient with 1/K of the (t, ε) variance."""
  prior, x, text = _gaussian_case((1, 2, 2, 3))
  keys = jax.random.split(jax.random.PRNGKey(9), 4000)
  def grads(k):
    config = _config(num_samples=k)
    g = jax.grad(lambda x, key: sds_lib.sds(config, prior, None, x, text, key, 0)[0])
    return jax.jit(jax.vmap(g, in_axes=(None, 0)))(x, keys)
  one, four = grads(1), grads(4)
  ratio = float(jnp.mean(jnp.var(four, axis=0)) / jnp.mean(jnp.var(one, axis=0)))
  assert 0.2 < ratio < 0.3
  # Same mean: the difference of the means is within a few standard errors of zero.
  stderr = jnp.sqrt(jnp.var(one, axis=0) / keys.shape[0])
  assert float(jnp.max(jnp.abs(jnp.mean(four, axis=0) - jnp.mean(one, axis=0)) / stderr)) < 5.0


def test_num_samples_must_be_positive():
  with pytest.raises(ValueError, match="config.sds.num_samples=0"):
    sds_lib.sds(_config(num_samples=0), GaussianPrior(), None, jnp.zeros((1, 2, 2, 3)),
                (jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 2))), jax.random.PRNGKey(0), 0)


def _denoised(x_t, eps_hat, ab):
  return (x_t - jnp.sqrt(1 - ab) * eps_hat) / jnp.sqrt(ab)


def test_thresholds_clip_x0_and_dynamic_rescales_it_per_image():
  """Imagen's rules: x0 within [-1, 1] is kept; beyond, static clips at 1, dynamic clips at the
  p-quantile s of |x0| and divides by s."""
  keys = jax.random.split(jax.random.PRNGKey(4), 3)
  x0 = jnp.stack([0.9 * jnp.tanh(jax.random.normal(keys[0], (4, 4, 3))),  # inside the range
                  3.0 * jax.random.normal(keys[1], (4, 4, 3))])  # far outside it
  ab = schedule.per_sample(jnp.array([0.7, 0.3]), x0)
  eps = jax.random.normal(keys[2], x0.shape)
  x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps  # so eps is the prediction whose x0 this is
  denoised = {}
  for mode in sds_lib.THRESHOLDS:
    out = sds_lib.threshold_x0(x_t, eps, jnp.array([0.7, 0.3]), mode, 0.9)
    np.testing.assert_allclose(out[0], eps[0], atol=1e-5)
    denoised[mode] = np.asarray(_denoised(x_t, out, ab)[1])
  np.testing.assert_allclose(denoised["none"], x0[1], atol=1e-4)
  np.testing.assert_allclose(denoised["static"], np.clip(np.asarray(x0[1]), -1, 1), atol=1e-4)
  s = np.quantile(np.abs(np.asarray(x0[1])), 0.9)
  assert s > 1.5
  np.testing.assert_allclose(denoised["dynamic"], np.clip(np.asarray(x0[1]), -s, s) / s, atol=1e-4)
  assert float(np.mean(np.abs(denoised["dynamic"]) > 0.999)) >= 0.1 - 1e-6
  with pytest.raises(ValueError, match="mode='soft'"):
    sds_lib.threshold_x0(x_t, eps, jnp.array([0.7, 0.3]), "soft")


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_threshold_in_sds_pulls_towards_the_thresholded_x0(mode):
  """With it, sds's residual is (α/σ)(x − x0') for the guided x0 thresholded: checked through sds()."""
  prior = GaussianPrior(std=STD)
  x = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  text = (jnp.full((2, 2, 2), 2.0), jnp.full((2, 2, 2), 0.0))  # guidance 100 overshoots towards mean 2
  config, key = _config(threshold=mode, threshold_percentile=0.95, guidance_scale=100.0), jax.random.PRNGKey(2)
  grad, _ = jax.jit(jax.grad(lambda x: sds_lib.sds(config, prior, None, x, text, key, 0), has_aux=True))(x)
  t, eps = surrogate.draw_t_and_noise(key, x, 0.02, 0.98, 1000)
  ab = schedule.per_sample(jnp.asarray(prior.alphas_cumprod, jnp.float32)[t], x)
  x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * eps
  guided = prior.guided_noise(None, x_t, t, *text, 100.0)
  x0 = np.asarray(_denoised(x_t, guided, ab))
  if mode == "static":
    assert float(np.abs(x0).max()) > 1.5  # the clip acts
    x0_thresholded = np.clip(x0, -1.0, 1.0)
  else:
    s = np.maximum(np.quantile(np.abs(x0).reshape(2, -1), 0.95, axis=1), 1.0).reshape(2, 1, 1, 1)
    assert float(s.min()) > 1.0  # both views overshoot, so the threshold acts on both
    x0_thresholded = np.clip(x0, -s, s) / s
  want = (1 - ab) * jnp.sqrt(ab / (1 - ab)) * (x - x0_thresholded) / 2
  assert _relative_error(grad, want) < 1e-3
  plain, _ = jax.grad(lambda x: sds_lib.sds(_config(guidance_scale=100.0), prior, None, x, text, key, 0),
                      has_aux=True)(x)
  assert _relative_error(plain, want) > 0.1  # the threshold changed the gradient


def test_threshold_needs_a_pixel_prior_and_a_known_mode():
  latent = dataclasses.replace(GaussianPrior(), kind="latent")
  text = (jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 2)))
  with pytest.raises(ValueError, match="threshold='static'.*pixel-space"):
    sds_lib.sds(_config(threshold="static"), latent, None, jnp.zeros((1, 2, 2, 3)), text,
                jax.random.PRNGKey(0), 0)
  with pytest.raises(config_check.ConfigError, match="sds.threshold"):
    config_check.check(helpers.loaded_config("sds", threshold="soft"))
  with pytest.raises(config_check.ConfigError, match="sds.threshold_percentile"):
    config_check.check(helpers.loaded_config("sds", threshold_percentile=1.5))


def test_denoise_weight_scales_the_denoising_term_apart(tiny):
  """g = w(t)(λ(ε_u − ε) + ω(ε_c − ε_u)) by hand from two UNet calls; λ = 1 is the SDS gradient exactly."""
  prior, params, (cond, uncond), x = tiny
  key = jax.random.PRNGKey(11)
  t, eps = surrogate.draw_t_and_noise(key, x, 0.02, 0.98, prior.num_train_timesteps)
  ab = schedule.per_sample(jnp.asarray(prior.alphas_cumprod, jnp.float32)[t], x)
  x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * eps
  predict = jax.jit(prior.predict_noise)
  eps_c, eps_u = predict(params, x_t, t, cond), predict(params, x_t, t, uncond)
  for lam in (0.0, 0.5):
    config = _config(denoise_weight=lam, guidance_scale=10.0)
    grad, _ = jax.jit(jax.grad(lambda x, c=config: sds_lib.sds(c, prior, params, x, (cond, uncond), key, 0),
                               has_aux=True))(x)
    want = (1 - ab) * (lam * (eps_u - eps) + 10.0 * (eps_c - eps_u)) / x.shape[0]
    assert _relative_error(grad, want) < 1e-4, lam
  sds_grad = lambda **kw: sds_lib.sds_gradient(prior, params, x, cond, uncond, t, eps, 10.0, **kw)
  np.testing.assert_array_equal(np.asarray(sds_grad()), np.asarray(sds_grad(denoise_weight=1.0)))
  with pytest.raises(ValueError, match="denoise_weight=0.5.*threshold='static'"):
    sds_grad(denoise_weight=0.5, threshold="static")


def test_guidance_term_alone_is_a_constant_pull_with_an_exact_denoiser():
  """λ = 0 with the Gaussian denoiser: ε_c − ε_u = σα(μ_u − μ_c)/(α² std² + σ²), the same for every x and
  ε, so the descent −g moves every element from the unconditional mean towards the conditional one."""
  mu_c, mu_u, omega = 0.3, -0.2, 10.0
  prior = GaussianPrior(std=STD)
  config = _config(denoise_weight=0.0, guidance_scale=omega, t_min=0.3, t_max=0.3)
  text = (jnp.full((2, 2, 2), mu_c), jnp.full((2, 2, 2), mu_u))
  grad_of = jax.jit(jax.grad(lambda x, key: sds_lib.sds(config, prior, None, x, text, key, 0)[0]))
  x1 = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  x2 = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 3))
  g1, g2 = grad_of(x1, jax.random.PRNGKey(2)), grad_of(x2, jax.random.PRNGKey(3))
  ab = float(prior.alphas_cumprod[300])
  a, sigma = ab**0.5, (1 - ab) ** 0.5
  want = (1 - ab) * omega * sigma * a * (mu_u - mu_c) / (ab * STD**2 + 1 - ab) / 2
  np.testing.assert_allclose(np.asarray(g1), want, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(g2), want, rtol=1e-4)
  assert want < 0  # descent (−g) raises x towards mu_c > mu_u
