"""Classifier-free guidance (Ho & Salimans 2022) from one call of a noise predictor.

Shared by the single prior (`stable_diffusion.Prior`) and an ensemble of them (`ensemble.PriorEnsemble`):
both hand in their own `predict_noise`.
"""

import jax
import jax.numpy as jnp


def guided_noise(predict_noise, params, x_t, t, cond, uncond, guidance_scale, uncond_weight=1.0, camera=None):
  """λ ε_u + ω(ε_c − ε_u) from ONE predict_noise call on the stacked [cond; uncond] batch.

  predict_noise(params, x_t, t, emb, camera) → ε̂ [B, h, w, C]; uncond_weight λ (1: the guided prediction).
  Everything is under stop_gradient: score distillation never differentiates the UNet (DreamFusion §3).
  """
  x_t, cond, uncond, camera = jax.lax.stop_gradient((x_t, cond, uncond, camera))
  both = predict_noise(
      params,
      jnp.concatenate([x_t, x_t]),
      jnp.concatenate([t, t]),
      jnp.concatenate([cond, uncond]),
      None if camera is None else jnp.concatenate([camera, camera]),
  )
  eps_c, eps_u = jnp.split(both, 2)
  return jax.lax.stop_gradient(uncond_weight * eps_u + guidance_scale * (eps_c - eps_u))
