"""Score Jacobian Chaining (Wang et al., CVPR 2023): perturb-and-average scoring, plus its regularizers.

SJC reads the ε-prediction UNet as a variance-exploding denoiser (Karras et al. 2022): for the VE noise
level σ = σ_t / α_t = √((1 − ᾱ_t)/ᾱ_t) the UNet sees α_t·z (a VP sample at t) and

  D(z, σ) = z − σ ε̂(α_t z, t),    ∇ log p_σ(z) ≈ (D(z, σ) − z) / σ².

A render x is no noisy sample, so SJC scores it by Perturb-and-Average Scoring (PAAS, Eq. 16-18):

  score(x) = (1/n) Σ_i (D(x + σ n_i, σ) − x) / σ²  ≈ ∇ log p_{√2σ}(x),

chained with the renderer's Jacobian. The 3D update ASCENDS the log-density, so the descent gradient
injected into x is g = −score. Algebra: (D(x + σn) − x)/σ² = (n − ε̂)/σ, i.e. g = (ε̂ − n)/σ — the SDS
direction with uniform weighting, scaled by 1/σ per view.

σ is drawn from the schedule's own ticks, SJC's `us[30:-10]` (config.sjc.tick_min / tick_trim).
"""

import jax
import jax.numpy as jnp

from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.prior import schedule

# config.sjc.weighting: "none" = the PAAS score itself (the paper's Algorithm 1);
# "sigma" = score × σ = (D − x)/σ, what SJC's released run_sjc.py back-propagates.
WEIGHTINGS = ("none", "sigma")
EMPTINESS_SCALE = 10.0  # log(1 + 10 w): SJC's emptiness_scale
DEPTH_BORDER = 7 / 64  # SJC crops 7 pixels of a 64-pixel render as the border of the centre-depth loss


def ve_sigma(alpha_bar):
  """VE noise level σ = σ_t / α_t = √((1 − ᾱ_t)/ᾱ_t) of VP timestep t."""
  return jnp.sqrt((1.0 - alpha_bar) / alpha_bar)


def denoise(prior, prior_params, z, t, cond, uncond, guidance_scale, camera=None):
  """D(z, σ_t) = z − σ ε̂_ω(α_t z, t): the guided UNet as a VE denoiser (z [B, h, w, C], t int [B])."""
  alpha_bar = schedule.gather(prior.alphas_cumprod, t)
  alpha = schedule.per_sample(jnp.sqrt(alpha_bar), z)
  eps = prior.guided_noise(prior_params, alpha * z, t, cond, uncond, guidance_scale, camera=camera)
  return z - schedule.per_sample(ve_sigma(alpha_bar), z) * eps


def paas_score(prior, prior_params, x, cond, uncond, t, noise, guidance_scale, camera=None):
  """PAAS: (1/n) Σ_i (D(x + σ n_i, σ) − x)/σ² for noise [n, B, h, w, C]; one UNet call on n·B views."""
  n, batch = noise.shape[0], x.shape[0]
  x = jax.lax.stop_gradient(x)
  sigma = schedule.per_sample(ve_sigma(schedule.gather(prior.alphas_cumprod, t)), x)
  z = (x[None] + sigma[None] * noise).reshape((n * batch,) + x.shape[1:])
  tile = lambda a: jnp.tile(a, (n,) + (1,) * (a.ndim - 1))
  d = denoise(prior, prior_params, z, tile(t), tile(cond), tile(uncond), guidance_scale,
              None if camera is None else tile(camera))
  d = d.reshape(noise.shape)
  return jnp.mean((d - x[None]) / jnp.square(sigma[None]), axis=0)


def sample_ticks(key, batch, config, num_train_timesteps):
  """t ~ U{tick_min, ..., T − tick_trim − 1} per view (SJC: σ from us[30:-10])."""
  c = config.sjc
  lo, hi = int(c.tick_min), num_train_timesteps - int(c.tick_trim)
  if not 0 <= lo < hi <= num_train_timesteps:
    raise ValueError(
        f"config.sjc.tick_min={c.tick_min}, tick_trim={c.tick_trim}: need 0 <= tick_min < T - tick_trim "
        f"with T={num_train_timesteps}"
    )
  return jax.random.randint(key, (batch,), lo, hi, jnp.int32)


def sjc(config, prior, prior_params, x, text, key, step, camera=None):
  """SJC surrogate loss and aux {"t", "grad_norm"}; ∂loss/∂x = −score / B (or −σ·score / B)."""
  del step  # SJC samples σ uniformly over the whole run
  c = config.sjc
  weighting = c.weighting
  if weighting not in WEIGHTINGS:
    raise ValueError(f"config.sjc.weighting={weighting!r}; allowed: {', '.join(WEIGHTINGS)}")
  if c.num_perturb < 1:
    raise ValueError(f"config.sjc.num_perturb={c.num_perturb}; must be >= 1")
  cond, uncond = surrogate.text_pair(text, x.shape[0])
  k_t, k_n = jax.random.split(key)
  t = sample_ticks(k_t, x.shape[0], config, prior.num_train_timesteps)
  noise = jax.random.normal(k_n, (c.num_perturb,) + x.shape, jnp.float32)
  score = paas_score(prior, prior_params, x, cond, uncond, t, noise, c.guidance_scale, camera)
  g = -score
  if weighting == "sigma":
    g = g * schedule.per_sample(ve_sigma(schedule.gather(prior.alphas_cumprod, t)), x)
  return surrogate.loss_and_aux(x, g, t, prior.num_train_timesteps)


def emptiness_loss(opacity_or_weights, step, config):
  """SJC's emptiness prior: weight · mean(log(1 + 10 w)), × ramp from half of config.num_steps on.

  Takes the per-sample ray weights (SJC) or the per-ray opacity; the log makes small densities cheap
  to keep and large ones expensive to add, so empty space stays empty.
  """
  c = config.sjc
  loss = c.emptiness_weight * jnp.mean(jnp.log1p(EMPTINESS_SCALE * opacity_or_weights))
  late = jnp.asarray(step) >= config.num_steps // 2
  return loss * jnp.where(late, c.emptiness_ramp, 1.0)


def center_depth_loss(depth, opacity):
  """SJC's centre-depth loss −log(mean_centre(d) − mean_border(d)), d = depth · opacity (unweighted).

  `depth` is the expected depth given termination (nerf/render.py) and d = Σ_i w_i t_i is 0 on empty
  rays, so the loss pushes the object to the centre of the image. Batched [B, H, W] (or [..., 1]),
  averaged over views; the difference is floored at 1e-6 so an empty centre stays finite.
  """
  d = depth * opacity
  if d.ndim == 4 and d.shape[-1] == 1:
    d = d[..., 0]
  h, w = d.shape[-2:]
  bh, bw = max(1, round(h * DEPTH_BORDER)), max(1, round(w * DEPTH_BORDER))
  centre = d[..., bh : h - bh, bw : w - bw]
  n_centre = centre.shape[-2] * centre.shape[-1]
  centre_sum = jnp.sum(centre, axis=(-2, -1))
  border_mean = (jnp.sum(d, axis=(-2, -1)) - centre_sum) / (h * w - n_centre)
  diff = centre_sum / n_centre - border_mean
  return jnp.mean(-jnp.log(jnp.maximum(diff, 1e-6)))
