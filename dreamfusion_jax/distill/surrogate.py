"""What the three distillation losses share: random draws and the surrogate that injects a gradient.

Score distillation never backpropagates through the UNet (DreamFusion §3, Eq. 2): the method computes
a per-element gradient g for the rendered image x and the loss is the surrogate

  loss = Σ_{b, h, w, c} stop_gradient(g) · x / B,   so   ∂loss/∂x = g / B   exactly.

Normalisation: mean over the batch of views, SUM over a view's elements — the PyTorch ports'
`0.5·‖x − sg(x − g)‖²` with reduction="sum" divided by the batch size. Each element of a view then
receives g itself whatever the resolution, and a batch of B views averages their gradients, so the
NeRF update does not depend on how many devices share the batch.
"""

import jax
import jax.numpy as jnp

from dreamfusion_jax.prior import schedule


def text_pair(text, batch):
  """Unpacks text = (cond, uncond), both [B, L, D], and checks the batch matches x."""
  cond, uncond = text
  if cond.shape[0] != batch or uncond.shape != cond.shape:
    raise ValueError(f"text: cond {cond.shape} and uncond {uncond.shape} must both be [B={batch}, L, D]")
  return cond, uncond


def draw_t_and_noise(key, x, t_lo, t_hi, num_train_timesteps):
  """(t int32 [B], ε ~ N(0, I) like x) from one key — the split every loss uses, so tests can redo it."""
  k_t, k_eps = jax.random.split(key)
  t = schedule.sample_timesteps(k_t, x.shape[0], t_lo, t_hi, num_train_timesteps)
  return t, jax.random.normal(k_eps, x.shape, jnp.float32)


def loss_and_aux(x, g, t, num_train_timesteps, **extra):
  """The surrogate Σ sg(g)·x / B (∂/∂x = g / B) and logged scalars: t as a fraction of T, ‖g‖ per view."""
  g = jax.lax.stop_gradient(g)
  batch = x.shape[0]
  loss = jnp.sum(g * x) / batch
  per_view = jnp.sqrt(jnp.sum(jnp.square(g).reshape(batch, -1), axis=-1))
  aux = {"t": jnp.mean(t.astype(jnp.float32)) / num_train_timesteps, "grad_norm": jnp.mean(per_view)}
  aux.update({k: jnp.asarray(v, jnp.float32) for k, v in extra.items()})
  return loss, aux
