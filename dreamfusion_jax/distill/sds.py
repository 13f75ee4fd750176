"""Score Distillation Sampling (DreamFusion, Poole et al. 2023, Eq. 3).

z_t = α_t x + σ_t ε, g = w(t)(ε̂_ω(z_t; y, t) − ε), with ε̂_ω the classifier-free-guided prediction
ε_u + ω(ε_c − ε_u) (ω = 100 in the paper) and w(t) = σ_t² = 1 − ᾱ_t. The UNet Jacobian is dropped:
g enters through the surrogate Σ sg(g)·x / B (surrogate.py).

config.sds.denoise_weight = λ scales the residual's two parts apart: g = w(t)(λ(ε_u − ε) + ω(ε_c − ε_u)).
λ = 1 is SDS. λ = 0 keeps the guidance term alone, Classifier Score Distillation (Yu et al. 2023, "Text-to-
3D with Classifier Score Distillation"), which found that term alone enough to distil. The denoising term
ε_u − ε is, at a render the prior finds likely, the pull towards the prior's posterior mean x̂₀, which
at large t is a blurred image: it spreads every edge outwards (shapes.fixed_point measures it).

config.sds.num_samples = K > 1 averages g over K independent draws of (t, ε) for the same render: an
unbiased estimate of the same expected gradient with less of its (t, ε) variance, for K more guided
UNet calls and no more rendering (the render is most of a step wherever the prior is small).
"""

import jax.numpy as jnp

from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.prior import schedule


THRESHOLDS = ("none", "static", "dynamic")


def threshold_x0(x_t, eps_hat, alpha_bar, mode, percentile=0.995):
  """ε̂ re-derived from Imagen's thresholded x̂₀ (Saharia et al. 2022, §2.3); pixel priors in [−1, 1].

  x̂₀ = (x_t − σ ε̂) / α, then "static": x̂₀' = clip(x̂₀, −1, 1); "dynamic": s = max(1, the `percentile`
  quantile of |x̂₀| per image), x̂₀' = clip(x̂₀, −s, s) / s; returns (x_t − α x̂₀') / σ ("none": ε̂).
  Where |x̂₀| stays within 1 both return ε̂ unchanged. With it the SDS residual ε̂' − ε equals
  (α / σ)(x − x̂₀'): the render is pulled towards the thresholded denoised image instead of a guided one
  whose colours overshoot the image range (Imagen's reason for it at high guidance). Dynamic's division
  by s also pulls the whole image, background included, towards grey (0).
  """
  if mode == "none":
    return eps_hat
  a = jnp.sqrt(schedule.per_sample(alpha_bar, x_t))
  sigma = jnp.sqrt(1.0 - schedule.per_sample(alpha_bar, x_t))
  x0 = (x_t - sigma * eps_hat) / a
  if mode == "static":
    x0 = jnp.clip(x0, -1.0, 1.0)
  elif mode == "dynamic":
    flat = jnp.abs(x0).reshape(x0.shape[0], -1)
    s = schedule.per_sample(jnp.maximum(jnp.quantile(flat, percentile, axis=1), 1.0), x0)
    x0 = jnp.clip(x0, -s, s) / s
  else:
    raise ValueError(f"threshold mode={mode!r}; allowed: {', '.join(THRESHOLDS)}")
  return (x_t - a * x0) / sigma


def sds_gradient(prior, prior_params, x, cond, uncond, t, eps, guidance_scale, weighting="sigma2",
                 threshold="none", percentile=0.995, denoise_weight=1.0, camera=None):
  """g = w(t)(ε̂_ω(α_t x + σ_t ε, t) − ε) for given t [B] and ε (the deterministic part of `sds`).

  threshold "static" / "dynamic": ε̂_ω from the thresholded x̂₀ (`threshold_x0`); "none" leaves it as the
  guidance gives it. denoise_weight λ: g = w(t)(λ(ε_u − ε) + ω(ε_c − ε_u)) (module docstring); λ ≠ 1
  needs threshold "none".
  """
  alpha_bar = schedule.gather(prior.alphas_cumprod, t)
  x_t = schedule.add_noise(x, eps, alpha_bar)
  if denoise_weight != 1.0 and threshold != "none":
    raise ValueError(f"sds.denoise_weight={denoise_weight} leaves out part of the guided prediction that "
                     f"sds.threshold={threshold!r} thresholds: use one of them (threshold 'none' or "
                     "denoise_weight 1)")
  eps_hat = prior.guided_noise(prior_params, x_t, t, cond, uncond, guidance_scale, denoise_weight, camera)
  eps_hat = threshold_x0(x_t, eps_hat, alpha_bar, threshold, percentile)
  w = schedule.weighting(weighting, alpha_bar)
  return schedule.per_sample(w, x) * (eps_hat - denoise_weight * eps)


def sds(config, prior, prior_params, x, text, key, step, camera=None):
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
  threshold = c.get("threshold", "none")  # a name config_check allows (threshold_x0 refuses others)
  if threshold != "none" and prior.kind != "pixel":
    raise ValueError(f"config.sds.threshold={threshold!r} thresholds pixels in [-1, 1]; it needs a "
                     f"pixel-space prior, and this one is {prior.kind!r}: set it to 'none'")
  g = sds_gradient(prior, prior_params, xs, tile(cond), tile(uncond), t, eps, c.guidance_scale, c.weighting,
                   threshold, float(c.get("threshold_percentile", 0.995)), float(c.denoise_weight),
                   None if camera is None else tile(camera))
  g = jnp.mean(g.reshape((k,) + x.shape), axis=0)
  return surrogate.loss_and_aux(x, g, t, prior.num_train_timesteps)
