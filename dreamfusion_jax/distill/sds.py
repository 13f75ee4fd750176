"""Score Distillation Sampling (DreamFusion, Poole et al. 2023, Eq. 3).

z_t = α_t x + σ_t ε, g = w(t)(ε̂_ω(z_t; y, t) − ε), with ε̂_ω the classifier-free-guided prediction
ε_u + ω(ε_c − ε_u) (ω = 100 in the paper) and w(t) = σ_t² = 1 − ᾱ_t. The UNet Jacobian is dropped:
g enters through the surrogate Σ sg(g)·x / B (surrogate.py).

config.sds.num_samples = K > 1 averages g over K independent draws of (t, ε) for the same render: an
unbiased estimate of the same expected gradient with less of its (t, ε) variance, for K more guided
UNet calls and no more rendering (the render is most of a step wherever the prior is small).
"""

import jax.numpy as jnp

from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.prior import schedule


def dynamic_threshold(x_t, eps_hat, alpha_bar, percentile):
  """ε̂ re-derived from Imagen's dynamically thresholded x̂₀ (Saharia et al. 2022, §2.3).

  x̂₀ = (x_t − σ ε̂) / α; s = max(1, the `percentile` quantile of |x̂₀| per image); x̂₀' = clip(x̂₀, −s, s) / s;
  returns (x_t − α x̂₀') / σ. Where |x̂₀| stays within 1 it returns ε̂ unchanged. Pixel space in [−1, 1]
  only: a latent prior's latents have no such range. With it, the SDS residual ε̂' − ε equals
  (α / σ)(x − x̂₀'): the render is pulled towards the thresholded denoised image instead of a
  guided one whose colours overshoot the image range (Imagen's reason for it at high guidance).
  """
  a = jnp.sqrt(schedule.per_sample(alpha_bar, x_t))
  sigma = jnp.sqrt(1.0 - schedule.per_sample(alpha_bar, x_t))
  x0 = (x_t - sigma * eps_hat) / a
  flat = jnp.abs(x0).reshape(x0.shape[0], -1)
  s = jnp.maximum(jnp.quantile(flat, percentile, axis=1), 1.0)
  s = schedule.per_sample(s, x0)
  x0 = jnp.clip(x0, -s, s) / s
  return (x_t - a * x0) / sigma


def sds_gradient(prior, prior_params, x, cond, uncond, t, eps, guidance_scale, weighting="sigma2",
                 threshold=0.0):
  """g = w(t)(ε̂_ω(α_t x + σ_t ε, t) − ε) for given t [B] and ε (the deterministic part of `sds`).

  threshold in (0, 1]: ε̂_ω from the dynamically thresholded x̂₀ at that percentile (`dynamic_threshold`);
  0 leaves it as the guidance gives it.
  """
  alpha_bar = schedule.gather(prior.alphas_cumprod, t)
  x_t = schedule.add_noise(x, eps, alpha_bar)
  eps_hat = prior.guided_noise(prior_params, x_t, t, cond, uncond, guidance_scale)
  if threshold > 0.0:
    eps_hat = dynamic_threshold(x_t, eps_hat, alpha_bar, threshold)
  w = schedule.weighting(weighting, alpha_bar)
  return schedule.per_sample(w, x) * (eps_hat - eps)


def sds(config, prior, prior_params, x, text, key, step):
  """SDS surrogate loss and aux {"t", "grad_norm"} for x [B, h, w, C] in model space.

  t ~ U{t_min·T .. t_max(step)·T} per view (config.sds; t_max annealed from t_max_start), ε ~ N(0, I).
  ∂loss/∂x = w(t)(ε̂ − ε) / B, or its mean over K = config.sds.num_samples draws of (t, ε) per view:
  the draws are those of draw_t_and_noise(key, x tiled K times along the batch), sample k of view b at
  index k·B + b, so K = 1 is the single-draw estimate itself.
  """
  c = config.sds
  schedule.weighting(c.weighting, 1.0)  # a bad name fails here, before tracing the UNet
  k = int(c.num_samples)
  if k < 1:
    raise ValueError(f"config.sds.num_samples={k}; must be >= 1")
  cond, uncond = surrogate.text_pair(text, x.shape[0])
  t_lo, t_hi = schedule.t_range(step, c.t_min, c.t_max, c.t_max_start, c.t_anneal_steps)
  tile = lambda a: jnp.concatenate([a] * k)
  xs = tile(x)
  t, eps = surrogate.draw_t_and_noise(key, xs, t_lo, t_hi, prior.num_train_timesteps)
  threshold = float(c.get("dynamic_threshold", 0.0))  # in [0, 1]: config_check
  if threshold > 0.0 and prior.kind != "pixel":
    raise ValueError("config.sds.dynamic_threshold thresholds pixels in [-1, 1]; it needs a pixel-space "
                     f"prior, and this one is {prior.kind!r}: set it to 0")
  g = sds_gradient(prior, prior_params, xs, tile(cond), tile(uncond), t, eps, c.guidance_scale, c.weighting,
                   threshold)
  g = jnp.mean(g.reshape((k,) + x.shape), axis=0)
  return surrogate.loss_and_aux(x, g, t, prior.num_train_timesteps)
