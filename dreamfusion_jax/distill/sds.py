"""Score Distillation Sampling (DreamFusion, Poole et al. 2023, Eq. 3).

z_t = α_t x + σ_t ε, g = w(t)(ε̂_ω(z_t; y, t) − ε), with ε̂_ω the classifier-free-guided prediction
ε_u + ω(ε_c − ε_u) (ω = 100 in the paper) and w(t) = σ_t² = 1 − ᾱ_t. The UNet Jacobian is dropped:
g enters through the surrogate Σ sg(g)·x / B (surrogate.py).
"""

from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.prior import schedule


def sds_gradient(prior, prior_params, x, cond, uncond, t, eps, guidance_scale, weighting="sigma2"):
  """g = w(t)(ε̂_ω(α_t x + σ_t ε, t) − ε) for given t [B] and ε (the deterministic part of `sds`)."""
  alpha_bar = schedule.gather(prior.alphas_cumprod, t)
  x_t = schedule.add_noise(x, eps, alpha_bar)
  eps_hat = prior.guided_noise(prior_params, x_t, t, cond, uncond, guidance_scale)
  w = schedule.weighting(weighting, alpha_bar)
  return schedule.per_sample(w, x) * (eps_hat - eps)


def sds(config, prior, prior_params, x, text, key, step):
  """SDS surrogate loss and aux {"t", "grad_norm"} for x [B, h, w, C] in model space.

  t ~ U{t_min·T .. t_max(step)·T} per view (config.sds; t_max annealed from t_max_start), ε ~ N(0, I).
  ∂loss/∂x = w(t)(ε̂ − ε) / B.
  """
  c = config.sds
  schedule.weighting(c.weighting, 1.0)  # a bad name fails here, before tracing the UNet
  cond, uncond = surrogate.text_pair(text, x.shape[0])
  t_lo, t_hi = schedule.t_range(step, c.t_min, c.t_max, c.t_max_start, c.t_anneal_steps)
  t, eps = surrogate.draw_t_and_noise(key, x, t_lo, t_hi, prior.num_train_timesteps)
  g = sds_gradient(prior, prior_params, x, cond, uncond, t, eps, c.guidance_scale, c.weighting)
  return surrogate.loss_and_aux(x, g, t, prior.num_train_timesteps)
