"""The training step cut into pieces, each jitted and timed alone on one device at one device's shapes.

render: forward + backward to the NeRF params, with a dummy cotangent on the image and the regularizers;
encode: VAE encoder forward + backward to the image (only a resize when the NeRF renders latents);
distill: the method's loss gradient w.r.t. the model-space render (it holds every UNet call of the method);
unet: one guided call, forward only, CFG batch 2B (SDS makes exactly one per step);
update: clip + Adam.
render + encode + distill + update should account for the step (unet is inside distill).
"""

import dataclasses
import time
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from dreamfusion_jax import distill
from dreamfusion_jax import step as step_lib
from dreamfusion_jax.bench import measure
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import regularizers
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import text as text_lib

PIECES = ("render", "encode", "distill", "unet", "update")
SUMMED = ("render", "encode", "distill", "update")  # unet is inside distill


def _to_model_space(setup: measure.Setup, prior_params, rgb):
  if setup.config.prior.latent_render:
    return setup.prior.latents_from_render(rgb)
  return setup.prior.encode_image(prior_params, rgb)


def piece_programs(setup: measure.Setup, seed: int = 0) -> dict:
  """name -> (fn, args): each piece of the step alone, at one device's shapes (batch_per_device)."""
  c, prior, scene, params = setup.config, setup.prior, setup.scene, setup.prior_params
  batch = c.batch_per_device
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 16))
  cams, modes = step_lib.sample_batch(c, next(keys), 0, batch)
  nerf = field.init_params(scene, next(keys))
  opt_state = setup.optimizer.init(nerf)
  rgb = jax.eval_shape(lambda p: render.render_views(scene, p, cams, next(keys), c, modes).rgb, nerf)
  rgb = jax.random.uniform(next(keys), rgb.shape)
  x = jax.eval_shape(lambda p, im: _to_model_space(setup, p, im), params, rgb)
  x = jax.random.normal(next(keys), x.shape)
  text = setup.text
  if setup.dry:  # concrete stand-ins of the right shapes (the pieces' inputs other than params are real)
    text = jax.tree_util.tree_map(lambda s: jax.random.normal(next(keys), s.shape), text)
  cond, uncond = text_lib.select(text, cams.view, cams.azimuth, c.prior.view_interpolate,
                                 textureless=modes == shading.TEXTURELESS)
  t = jnp.full((batch,), prior.num_train_timesteps // 2, jnp.int32)
  guidance = c[c.distill].guidance_scale

  def render_grad(nerf, cams, modes, key, cotangent):
    def loss(p):
      out = render.render_views(scene, p, cams, key, c, modes, train=True)
      return (jnp.sum(cotangent * out.rgb) + regularizers.orientation_loss(out)
              + regularizers.opacity_loss(out))
    return jax.grad(loss)(nerf)

  def encode_grad(params, rgb, cotangent):
    _, vjp = jax.vjp(lambda im: _to_model_space(setup, params, im), rgb)
    return vjp(cotangent)[0]

  def distill_grad(params, x, cond, uncond, key, step):
    loss_fn = distill.LOSSES[c.distill]
    return jax.grad(lambda z: loss_fn(c, prior, params, z, (cond, uncond), key, step)[0])(x)

  def unet(params, x_t, t, cond, uncond):
    return prior.guided_noise(params, x_t, t, cond, uncond, guidance)

  def update(grads, opt_state, nerf):
    updates, opt_state = setup.optimizer.update(grads, opt_state, nerf)
    return optax.apply_updates(nerf, updates), opt_state

  grads = jax.tree_util.tree_map(lambda p: 1e-3 * jnp.ones_like(p), nerf)
  return {
      "render": (render_grad, (nerf, cams, modes, next(keys), jnp.ones_like(rgb))),
      "encode": (encode_grad, (params, rgb, jnp.ones_like(x))),
      "distill": (distill_grad, (params, x, cond, uncond, next(keys), jnp.int32(0))),
      "unet": (unet, (params, x, t, cond, uncond)),
      "update": (update, (grads, opt_state, nerf)),
  }


def bench_pieces(setup: measure.Setup, steps: int, warmup: int, peak_tflops: Optional[float]) -> dict:
  """Compiles and times each of piece_programs on the default device."""
  if not setup.dry:
    setup = dataclasses.replace(setup, prior_params=jax.device_put(setup.prior_params))
  out = {}
  for name, (fn, args) in piece_programs(setup).items():
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    out[name] = {"flops_hlo": measure.xla_flops(lowered)}
    if setup.dry:
      continue
    compiled = lowered.compile()
    t = measure.time_calls(lambda compiled=compiled, args=args: compiled(*args), steps, warmup)
    out[name].update(compile_s=time.perf_counter() - start, flops=measure.xla_flops(compiled),
                     ms=t["ms_median"], ms_min=t["ms_min"], calls_per_s=t["per_s"])
    measure.add_rates(out[name], out[name]["ms"], peak_tflops)
  if peak_tflops and out["unet"].get("flops"):
    out["unet"]["floor_ms"] = out["unet"]["flops"] / (peak_tflops * 1e9)
  return out


def sum_pieces(pieces: dict, step: dict) -> dict:
  """Sums of the pieces (unet is inside distill) and their ratio to a 1-device step."""
  out = {}
  for key in ("flops", "flops_hlo", "ms"):
    values = [pieces[n].get(key) for n in SUMMED]
    if all(v is not None for v in values):
      out[key] = float(sum(values))
  if step["devices"] == 1:
    for key, step_key in (("flops", "flops"), ("flops_hlo", "flops_hlo"), ("ms", "ms_per_step")):
      if out.get(key) and step.get(step_key):
        out[f"{key}_vs_step"] = out[key] / step[step_key]
  return out


def flops_caveats(config) -> list:
  """Where XLA's count is low: HloCostAnalysis counts a loop's body once, whatever its trip count."""
  out = []
  if int(config.render.get("chunk", 0)) > 0:
    out.append("render.chunk > 0: the chunk loop's body is counted once, so render FLOPs are low")
  if config.distill == "ism":
    out.append("ism: the DDIM-inversion loop's body is counted once, so distill FLOPs are low")
  return out
