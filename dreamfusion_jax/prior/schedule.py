"""The diffusion noise schedule: alphā_t, timestep sampling, loss weightings and DDIM steps.

Notation (DreamFusion §2 / DDPM): z_t = α_t x + σ_t ε with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), t an integer
index into the scheduler's `num_train_timesteps` (T, 1000 for Stable Diffusion). Everything that takes
ᾱ takes it already gathered per batch element (shape [B]) and broadcasts it over NHWC images.

The schedule is computed here from the scheduler config instead of through diffusers' scheduler classes:
those import PyTorch, and the betas are three closed forms.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
WEIGHTINGS = ("sigma2", "uniform", "snr_sqrt")


def alphas_cumprod_from_config(config):
  """ᾱ_t for t = 0 .. T-1 from a diffusers scheduler config dict (float64 numpy, [T])."""
  num_steps = int(config.get("num_train_timesteps", 1000))
  trained = config.get("trained_betas")
  schedule = config.get("beta_schedule", "linear")
  beta_start = float(config.get("beta_start", 1e-4))
  beta_end = float(config.get("beta_end", 2e-2))
  if trained is not None:
    betas = np.asarray(trained, np.float64)
  elif schedule == "linear":
    betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  elif schedule == "scaled_linear":
    # Latent diffusion's schedule: linear in √β (Rombach et al. 2022), what SD 1.x/2.x were trained on.
    betas = np.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=np.float64) ** 2
  elif schedule == "squaredcos_cap_v2":
    # Improved DDPM's cosine schedule (Nichol & Dhariwal 2021), betas capped at 0.999.
    def f(u):
      return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array([min(1 - f((i + 1) / num_steps) / f(i / num_steps), 0.999) for i in range(num_steps)])
  else:
    raise ValueError(f"scheduler config beta_schedule={schedule!r}; allowed: {', '.join(BETA_SCHEDULES)}")
  return np.cumprod(1.0 - betas)


def load_scheduler_config(path):
  """Reads `scheduler_config.json` (a file, or a folder holding it)."""
  if os.path.isdir(path):
    path = os.path.join(path, "scheduler_config.json")
  with open(path) as f:
    return json.load(f)


def anneal(step, start, end, steps):
  """Linear interpolation start → end over `steps` steps, then constant; steps <= 0 gives `end`."""
  if steps <= 0:
    return jnp.asarray(end, jnp.float32)
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
  return start + (end - start) * frac


def t_range(step, t_min, t_max, t_max_start, anneal_steps):
  """(t_lo, t_hi) as fractions of T at `step`; t_hi goes linearly t_max_start → t_max (ISM, §4)."""
  return jnp.asarray(t_min, jnp.float32), anneal(step, t_max_start, t_max, anneal_steps)


def sample_timesteps(key, batch, t_lo, t_hi, num_train_timesteps):
  """Integer t ~ U{⌊t_lo·T⌋, ..., ⌊t_hi·T⌋} per batch element (int32 [B]); bounds may be traced.

  The same inclusive integer range the PyTorch ports draw with randint(min_step, max_step + 1).
  """
  lo = jnp.floor(t_lo * num_train_timesteps)
  hi = jnp.maximum(jnp.floor(t_hi * num_train_timesteps), lo)
  u = jax.random.uniform(key, (batch,))
  t = jnp.floor(lo + u * (hi - lo + 1.0))
  return jnp.clip(t, lo, jnp.minimum(hi, num_train_timesteps - 1)).astype(jnp.int32)


def gather(alphas_cumprod, t):
  """ᾱ_t for integer t (any shape), as float32; out-of-range t is clipped to [0, T-1]."""
  table = jnp.asarray(alphas_cumprod, jnp.float32)
  return table[jnp.clip(t, 0, table.shape[0] - 1)]


def per_sample(v, x):
  """Reshapes a per-sample [B] vector to broadcast against x [B, ...]."""
  return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def weighting(name, alpha_bar):
  """w(t) from ᾱ_t: sigma2 = 1 − ᾱ (DreamFusion), uniform = 1, snr_sqrt = √((1 − ᾱ)/ᾱ) (ISM)."""
  if name == "sigma2":
    return 1.0 - alpha_bar
  if name == "uniform":
    return jnp.ones_like(alpha_bar)
  if name == "snr_sqrt":
    return jnp.sqrt((1.0 - alpha_bar) / alpha_bar)
  raise ValueError(f"weighting={name!r}; allowed: {', '.join(WEIGHTINGS)}")


def add_noise(x0, eps, alpha_bar):
  """Forward process z_t = √ᾱ x_0 + √(1 − ᾱ) ε, with ᾱ per batch element [B]."""
  ab = per_sample(alpha_bar, x0)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def predict_x0(x_t, eps, alpha_bar):
  """Tweedie / DDIM estimate x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."""
  ab = per_sample(alpha_bar, x_t)
  return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def ddim_step(x_from, eps, alpha_bar_from, alpha_bar_to):
  """Deterministic DDIM (η = 0) move from ᾱ_from to ᾱ_to with the noise estimate ε̂ at x_from.

  x_to = √ᾱ_to x̂_0 + √(1 − ᾱ_to) ε̂. The same formula denoises (ᾱ_to > ᾱ_from) and inverts
  (ᾱ_to < ᾱ_from, ISM's DDIM inversion); a step to the same ᾱ returns x_from exactly (up to rounding).
  """
  x0 = predict_x0(x_from, eps, alpha_bar_from)
  ab = per_sample(alpha_bar_to, x_from)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def eps_from_v(x_t, v, alpha_bar):
  """ε from a v-prediction (Salimans & Ho 2022): v = α ε − σ x_0  ⇒  ε = σ x_t + α v."""
  ab = per_sample(alpha_bar, x_t)
  return jnp.sqrt(1.0 - ab) * x_t + jnp.sqrt(ab) * v
