"""Interval Score Matching (LucidDreamer, Liang et al., CVPR 2024, Eq. 12-15).

SDS compares the UNet's prediction with the random ε that made z_t; for large t that target is far
from anything the UNet can predict from a render, which blurs results. ISM replaces it with a
deterministic path: DDIM-invert x_0 = x (unconditional prediction ε_φ(·, ∅)) to x_s, s = t − δ_T, in
at most `inversion_steps` strides of δ_S, take one more DDIM step s → t, and match the two ends:

  g = w(t) (ε̂_ω(x_t, t, y) − ε_φ(x_s, s, ∅)),   w(t) = √((1 − ᾱ_t)/ᾱ_t).

Each inversion step is x_{k'} = √ᾱ_{k'} x̂_0(x_k) + √(1 − ᾱ_{k'}) ε_φ(x_k, k, ∅) (schedule.ddim_step).
As in LucidDreamer, when s > δ_S·steps the inversion starts from the forward-noised x at
s − δ_S·steps instead of x itself. t_max and δ_T are annealed (config.ism).
"""

import jax
import jax.numpy as jnp

from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.prior import schedule


def ddim_invert(prior, prior_params, x0, uncond, s, delta_s, steps, key, camera=None):
  """DDIM inversion x_0 → x_s (s int [B]) with ε_φ(·, ∅); returns (x_s, ε_φ(x_s, s, ∅)), both constant.

  Strides of `delta_s` from k_0 = max(s − delta_s·steps, 0), the last one clipped at s; k_0 > 0 starts
  from √ᾱ x_0 + √(1 − ᾱ) ε with ε drawn from `key`. A fori_loop keeps one UNet in the compiled program.
  """
  x0 = jax.lax.stop_gradient(x0)
  ab = lambda k: schedule.gather(prior.alphas_cumprod, k)
  k0 = jnp.maximum(s - delta_s * steps, 0)
  noisy = schedule.add_noise(x0, jax.random.normal(key, x0.shape, jnp.float32), ab(k0))
  x = jnp.where(schedule.per_sample(k0 > 0, x0), noisy, x0)

  def stride(carry):
    x, k = carry
    k_next = jnp.minimum(k + delta_s, s)
    eps = prior.predict_noise(prior_params, x, k, uncond, camera)
    stepped = schedule.ddim_step(x, eps, ab(k), ab(k_next))
    return jnp.where(schedule.per_sample(k_next > k, x), stepped, x), k_next

  def body(_, carry):
    # Once every view has reached its s the remaining strides are skipped (no UNet call).
    return jax.lax.cond(jnp.all(carry[1] >= s), lambda c: c, stride, carry)

  if delta_s > 0 and steps > 0:
    x, _ = jax.lax.fori_loop(0, steps, body, (x, k0))
  eps_s = prior.predict_noise(prior_params, x, s, uncond, camera)
  return jax.lax.stop_gradient((x, eps_s))


def ism_gradient(prior, prior_params, x, cond, uncond, t, s, key, guidance_scale, delta_s, inversion_steps,
                 camera=None):
  """g = w(t)(ε̂_ω(x_t, t) − ε_φ(x_s, s, ∅)) for given t, s [B]; `key` only feeds a noisy inversion start."""
  x_s, eps_s = ddim_invert(prior, prior_params, x, uncond, s, delta_s, inversion_steps, key, camera)
  ab_s = schedule.gather(prior.alphas_cumprod, s)
  ab_t = schedule.gather(prior.alphas_cumprod, t)
  x_t = schedule.ddim_step(x_s, eps_s, ab_s, ab_t)
  eps_hat = prior.guided_noise(prior_params, x_t, t, cond, uncond, guidance_scale, camera=camera)
  return schedule.per_sample(schedule.weighting("snr_sqrt", ab_t), x) * (eps_hat - eps_s)


def interval(step, config):
  """δ_T at `step`: annealed linearly delta_t_start → delta_t over t_anneal_steps, rounded (int32)."""
  c = config.ism
  delta = schedule.anneal(step, c.delta_t_start, c.delta_t, c.t_anneal_steps)
  return jnp.round(delta).astype(jnp.int32)


def ism(config, prior, prior_params, x, text, key, step, camera=None):
  """ISM surrogate loss and aux {"t", "grad_norm", "delta_t"}; ∂loss/∂x = g / B."""
  c = config.ism
  for field in ("delta_t", "delta_t_start", "delta_s", "inversion_steps"):
    if c[field] < 0:
      raise ValueError(f"config.ism.{field}={c[field]}; must be >= 0")
  cond, uncond = surrogate.text_pair(text, x.shape[0])
  k_draw, k_inv = jax.random.split(key)
  t_lo, t_hi = schedule.t_range(step, c.t_min, c.t_max, c.t_max_start, c.t_anneal_steps)
  t = schedule.sample_timesteps(k_draw, x.shape[0], t_lo, t_hi, prior.num_train_timesteps)
  delta_t = interval(step, config)
  s = jnp.maximum(t - delta_t, 0)
  g = ism_gradient(prior, prior_params, x, cond, uncond, t, s, k_inv, c.guidance_scale,
                   int(c.delta_s), int(c.inversion_steps), camera)
  return surrogate.loss_and_aux(x, g, t, prior.num_train_timesteps, delta_t=delta_t)
