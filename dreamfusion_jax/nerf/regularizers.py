"""Geometry regularizers of DreamFusion (App. A) and their weights; each maps a RenderOutput to a scalar."""

import jax
import jax.numpy as jnp

from dreamfusion_jax.nerf.render import RenderOutput

ENTROPY_KINDS = ("binary", "weights")


def orientation_loss(out: RenderOutput) -> jax.Array:
  """Mean over rays of sum_i sg(w_i) max(0, n_i . d)^2 (Ref-NeRF's orientation loss, DreamFusion Eq. 7).

  It penalises normals that face away from the camera where the ray terminates, which would otherwise
  let the density paint a flat, camera-facing layer.
  """
  return jnp.mean(out.orientation)


def opacity_loss(out: RenderOutput) -> jax.Array:
  """Mean of sqrt(opacity^2 + 0.01): an L1-like push towards empty space that is smooth at 0."""
  return jnp.mean(jnp.sqrt(out.opacity**2 + 0.01))


def coverage_loss(out: RenderOutput, max_coverage: float) -> jax.Array:
  """Mean over views of max(0, c - max_coverage), c the view's covered fraction (its mean opacity).

  A cap, not a push: views whose object covers at most `max_coverage` of the frame feel nothing, while a
  fog that fills the frame pays linearly for every pixel it covers beyond the cap. `out` holds a
  leading views axis ([V, H, W] opacities).
  """
  covered = jnp.mean(out.opacity.reshape(out.opacity.shape[0], -1), axis=-1)
  return jnp.mean(jax.nn.relu(covered - max_coverage))


def distortion_loss(out: RenderOutput) -> jax.Array:
  """Mean over rays of mip-NeRF 360's distortion loss (render.distortion): pulls each ray's weight
  into one short stretch, so a low-density cloud spread through the scene costs while surfaces do not."""
  return jnp.mean(out.distortion)


def entropy_loss(out: RenderOutput, kind: str = "binary", eps: float = 1e-5) -> jax.Array:
  """Mean entropy that favours crisp geometry.

  kind="binary": binary entropy of each ray's opacity (pushes opacity to 0 or 1).
  kind="weights": entropy of the weights normalised along each ray (pushes mass into one sample).
  """
  if kind == "binary":
    o = jnp.clip(out.opacity, eps, 1.0 - eps)
    return jnp.mean(-o * jnp.log(o) - (1.0 - o) * jnp.log(1.0 - o))
  if kind == "weights":
    p = out.weights / jnp.maximum(jnp.sum(out.weights, axis=-1, keepdims=True), eps)
    return jnp.mean(-jnp.sum(p * jnp.log(jnp.maximum(p, eps)), axis=-1))
  raise ValueError(f"entropy kind must be one of {ENTROPY_KINDS}, got {kind!r}")


SCHEDULED = ("entropy", "distortion")  # terms whose weight may start late and ramp up


def scheduled_weight(step, config, name: str) -> jax.Array:
  """Weight of regularizer `name` (one of SCHEDULED) at `step` (may be traced): 0 before
  config.reg.<name>_start, then a linear ramp to config.reg.<name> over <name>_ramp_steps (at once when
  0), constant afterwards.

  A late start lets SDS form the object first; from the first step the entropy term freezes the initial
  blob's opacity into a hard shell that SDS then only stretches.
  """
  if name not in SCHEDULED:
    raise ValueError(f"scheduled regularizer must be one of {SCHEDULED}, got {name!r}")
  rg = config.reg
  start, ramp = int(rg[f"{name}_start"]), int(rg[f"{name}_ramp_steps"])
  frac = jnp.clip((jnp.asarray(step, jnp.float32) - start + 1.0) / max(ramp, 1), 0.0, 1.0)
  return float(rg[name]) * frac


def orientation_weight(step, config) -> jax.Array:
  """Weight of the orientation loss at `step` (may be traced).

  Goes from config.reg.orientation_start to config.reg.orientation over orientation_anneal_steps,
  geometrically when both are positive (the paper's 1e-4 -> 1e-2 spans two decades, so a linear ramp
  would sit near the final value almost at once) and linearly otherwise; constant afterwards.
  """
  rg = config.reg
  start, end, steps = float(rg.orientation_start), float(rg.orientation), int(rg.orientation_anneal_steps)
  if start < 0.0 or end < 0.0 or steps < 0:
    raise ValueError(f"config.reg.orientation_start/orientation/orientation_anneal_steps must be >= 0, "
                     f"got {start}, {end}, {steps}")
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(steps, 1), 0.0, 1.0)
  if steps == 0:
    frac = jnp.ones_like(frac)
  if start > 0.0 and end > 0.0:
    return jnp.exp((1.0 - frac) * jnp.log(start) + frac * jnp.log(end))
  return (1.0 - frac) * start + frac * end
