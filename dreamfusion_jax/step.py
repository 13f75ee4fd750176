"""One DreamFusion training step: sample views, render, encode, distill, regularize, update.

The whole step is one `jax.jit` over a 1-D device mesh: the trainable state and the frozen prior params
are replicated, the batch of views is sharded over the `data` axis, and XLA inserts the gradient
all-reduce (the modern form of DreamFusion's pmapped step). Every random choice comes from
`fold_in(state.key, state.step)`, so a step is a pure function of (state, prior params, text).
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from dreamfusion_jax import distill
from dreamfusion_jax import distributed
from dreamfusion_jax.distill import sjc as sjc_lib
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import encoding
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import regularizers
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import text as text_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # NeRF params (field + background)
  opt_state: Any  # optax state
  key: jax.Array  # uint32 [2] root PRNG key; step keys are fold_in(key, step)
  # Exponential moving average of `params` (config.optim.ema_decay > 0), else None (no leaves).
  ema_params: Any = None


def final_params(state: TrainState) -> Any:
  """The params a run exports and is scored with: the moving average when the run keeps one."""
  return state.params if state.ema_params is None else state.ema_params


def final_params_item(config) -> str:
  """Name of the TrainState field that final_params reads, for restoring it alone from a checkpoint."""
  return "ema_params" if config.optim.ema_decay > 0 else "params"


def learning_rate(config) -> optax.Schedule:
  """Linear warm-up from init_lr to lr, then cosine decay to end_lr at num_steps."""
  o = config.optim
  warmup = min(o.warmup_steps, config.num_steps)
  decay_steps = max(config.num_steps - warmup, 1)
  return optax.join_schedules([
      optax.linear_schedule(o.init_lr, o.lr, max(warmup, 1)),
      optax.cosine_decay_schedule(o.lr, decay_steps, alpha=o.end_lr / o.lr),
  ], [warmup])


def make_optimizer(config) -> optax.GradientTransformation:
  o = config.optim
  parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip > 0 else []
  parts.append(optax.adam(learning_rate(config), eps=o.eps))
  return optax.chain(*parts)


def init_state(config, scene, optimizer, mesh) -> TrainState:
  """Initial state, created directly with replicated sharding on every device of the mesh."""

  def init(key):
    params = field.init_params(scene, jax.random.fold_in(key, 0))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), key=key,
                      ema_params=params if config.optim.ema_decay > 0 else None)

  return jax.jit(init, out_shardings=distributed.replicated(mesh))(jax.random.PRNGKey(config.seed))


def encoding_blur(step, config) -> jax.Array:
  """The extra IPE variance of training step `step` (config.nerf.coarse_to_fine_*; 0 when off)."""
  n = config.nerf
  return encoding.coarse_to_fine_variance(step, int(n.num_freqs), float(n.coarse_to_fine_start),
                                          int(n.coarse_to_fine_steps))


def _loss(params, batch, *, config, scene, prior, prior_params, text, keys, step):
  """Total loss of one view batch and its named terms (all scalars)."""
  cams, modes = batch
  out = render.render_views(scene, params, cams, keys["render"], config, modes, train=True,
                            extra_variance=encoding_blur(step, config))
  if config.prior.latent_render:
    x = prior.latents_from_render(out.rgb)
  else:
    x = prior.encode_image(prior_params, out.rgb)
  cond, uncond = text_lib.select(text, cams.view, cams.azimuth, config.prior.view_interpolate,
                                 textureless=modes == shading.TEXTURELESS)
  loss_fn = distill.LOSSES[config.distill]
  extra = {}
  if prior.camera_conditioned:
    extra["camera"] = camera.conditioning(cams, config.prior.camera_zoom)
  distill_loss, aux = loss_fn(config, prior, prior_params, x, (cond, uncond), keys["distill"], step, **extra)
  terms = {
      "distill": distill_loss,
      "orientation": regularizers.orientation_weight(step, config) * regularizers.orientation_loss(out),
      "opacity": config.reg.opacity * regularizers.opacity_loss(out),
  }
  if config.reg.coverage > 0:
    terms["coverage"] = config.reg.coverage * regularizers.coverage_loss(out, config.reg.coverage_max)
  if config.reg.distortion > 0:
    terms["distortion"] = (regularizers.scheduled_weight(step, config, "distortion")
                           * regularizers.distortion_loss(out))
  if config.reg.entropy > 0:
    terms["entropy"] = regularizers.scheduled_weight(step, config, "entropy") * regularizers.entropy_loss(out)
  if config.distill == "sjc":
    terms["emptiness"] = sjc_lib.emptiness_loss(out.opacity, step, config)
    if config.sjc.center_depth_weight > 0:
      terms["center_depth"] = config.sjc.center_depth_weight * sjc_lib.center_depth_loss(out.depth, out.opacity)
  total = sum(terms.values())
  aux = dict(aux, **{f"loss/{k}": v for k, v in terms.items()},
             opacity_mean=jnp.mean(out.opacity))
  return total, aux


def sample_batch(config, key, step, batch_size):
  """Cameras, lights and per-view shading modes of one step (identical for any device layout)."""
  k_cam, k_mode = jax.random.split(key)
  cams = camera.sample_views(k_cam, batch_size, config, step)
  if config.prior.latent_render:  # latents carry no light: always render the albedo channels
    modes = jnp.full((batch_size,), shading.ALBEDO, jnp.int32)
  else:
    modes = shading.sample_mode(k_mode, step, batch_size, config)
  return cams, modes


def make_train_step(config, scene, prior, optimizer, mesh):
  """Returns step(state, prior_params, text) -> (state, metrics), jitted over `mesh`.

  The state is donated; prior params and text embeddings are arguments (replicated, never donated).
  A step whose loss or gradient is not finite leaves the state unchanged and reports finite=0, so the
  caller can stop with the last good parameters.
  """
  batch_size = config.batch_per_device * mesh.size
  schedule = learning_rate(config)
  decay = float(config.optim.ema_decay)

  def train_step(state, prior_params, text):
    key = jax.random.fold_in(state.key, state.step)
    k_batch, k_render, k_distill = jax.random.split(key, 3)
    batch = sample_batch(config, k_batch, state.step, batch_size)
    batch = jax.lax.with_sharding_constraint(batch, distributed.batch_sharded(mesh))
    loss_fn = functools.partial(
        _loss, config=config, scene=scene, prior=prior, prior_params=prior_params, text=text,
        keys={"render": k_render, "distill": k_distill}, step=state.step)
    (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads)))
    finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = state.replace(step=state.step + finite.astype(jnp.int32),
                              params=keep(params, state.params),
                              opt_state=keep(opt_state, state.opt_state))
    if state.ema_params is not None:
      ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
      new_state = new_state.replace(ema_params=keep(ema, state.ema_params))
    metrics = dict(aux, loss=total, param_grad_norm=grad_norm, finite=finite,
                   lr=schedule(state.step))
    return new_state, metrics

  replicated = distributed.replicated(mesh)
  return jax.jit(train_step, donate_argnums=0, out_shardings=(replicated, replicated))
