r"""2D mode: optimise one image (pixel prior) or latent (latent prior) directly with SDS, SJC or ISM.

  python -m dreamfusion_jax.distill.image2d --prior DIR_OR_HUB_ID --prompt "a DSLR photo of a corgi" \
      --method sds --steps 500 --out corgi.png

The "generator" is the identity (DreamFusion §3's x = g(θ) with θ = x), so this isolates the loss
from the NeRF: it is the quickest way to see what a prior, a guidance scale or a t-range does.
Every method keeps its own defaults from configs/base.py; --guidance_scale overrides the method's.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from dreamfusion_jax import config_files
from dreamfusion_jax.distill import LOSSES
from dreamfusion_jax.prior import text as text_lib

def configure(config, prompt, method, steps, guidance_scale=None):
  """The config with prompt, method, step count and (optionally) the method's guidance scale set."""
  if method not in LOSSES:
    raise ValueError(f"method={method!r}; allowed: {', '.join(LOSSES)}")
  config = config.copy_and_resolve_references()
  config.prompt, config.distill, config.num_steps = prompt, method, int(steps)
  if guidance_scale is not None:
    config[method].guidance_scale = float(guidance_scale)
  return config


def optimise(config, prior, prior_params, text, key, lr=0.05, batch=1, view=0, x_init=None):
  """Adam on x in model space for config.num_steps steps; returns (x [B, h, w, C], last aux)."""
  views = jnp.full((batch,), view, jnp.int32)
  cond, uncond = text_lib.select(text, views, jnp.zeros((batch,)))
  return optimise_conditioned(config, prior, prior_params, cond, uncond, key, lr, x_init)


def optimise_conditioned(config, prior, prior_params, cond, uncond, key, lr=0.05, x_init=None,
                         progress=False):
  """`optimise` with one (cond, uncond) embedding pair per image, [B, L, D] each.

  Adam is elementwise, so B images with B prompts optimise as B separate runs would (each with its own
  noise draws).
  """
  shape = (cond.shape[0], prior.sample_size, prior.sample_size, prior.channels)
  x = jnp.zeros(shape, jnp.float32) if x_init is None else jnp.asarray(x_init, jnp.float32)
  loss_fn = LOSSES[config.distill]
  optimizer = optax.adam(lr)

  @jax.jit
  def update(x, opt_state, step, prior_params):
    step_key = jax.random.fold_in(key, step)
    grad_fn = jax.grad(loss_fn, argnums=3, has_aux=True)
    grad, aux = grad_fn(config, prior, prior_params, x, (cond, uncond), step_key, step)
    updates, opt_state = optimizer.update(grad, opt_state, x)
    return optax.apply_updates(x, updates), opt_state, aux

  opt_state, aux = optimizer.init(x), {}
  steps = tqdm.trange(config.num_steps, desc="image2d", mininterval=10.0) if progress else range(
      config.num_steps)
  for step in steps:
    x, opt_state, aux = update(x, opt_state, jnp.int32(step), prior_params)
  return x, aux


def to_uint8(rgb):
  """[H, W, 3] in [0, 1] → uint8."""
  return np.asarray(jnp.round(jnp.clip(rgb, 0.0, 1.0) * 255.0)).astype(np.uint8)


def parse_args(argv):
  p = argparse.ArgumentParser(
      prog="python -m dreamfusion_jax.distill.image2d", description=__doc__.split("\n")[0]
  )
  p.add_argument("--prior", required=True, help="diffusers-layout folder or hub id")
  p.add_argument("--prompt", required=True)
  p.add_argument("--negative_prompt", default="")
  p.add_argument("--method", default="sds", choices=sorted(LOSSES))
  p.add_argument("--steps", type=int, default=500)
  p.add_argument("--out", required=True, help="PNG to write")
  p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate on x")
  p.add_argument("--guidance_scale", type=float, default=None, help="default: the method's config value")
  p.add_argument("--view", default="front", choices=list(text_lib.VIEW_NAMES) + ["none"],
                 help="view suffix of the prompt; none: the bare prompt")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--local_files_only", action="store_true")
  p.add_argument("--from_pt", action="store_true")
  p.add_argument("--config", default=config_files.BASE, help="config file whose method sections are used")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from dreamfusion_jax.prior import stable_diffusion  # pylint: disable=g-import-not-at-top  # slow import

  config = configure(config_files.load(args.config), args.prompt, args.method, args.steps,
                     args.guidance_scale)
  prior, params = stable_diffusion.load_prior(
      args.prior, args.dtype, local_files_only=args.local_files_only, from_pt=args.from_pt
  )
  view_dependent = args.view != "none"
  text = text_lib.embed_prompts(prior, params, args.prompt, args.negative_prompt, view_dependent)
  view = text_lib.VIEW_NAMES.index(args.view) if view_dependent else 0
  x, aux = optimise(config, prior, params, text, jax.random.PRNGKey(args.seed), args.lr, view=view)
  rgb = prior.decode(params, x)[0]
  from PIL import Image  # pylint: disable=g-import-not-at-top

  Image.fromarray(to_uint8(rgb)).save(args.out)
  summary = ", ".join(f"{k}={float(v):.4g}" for k, v in aux.items())
  print(f"wrote {args.out} ({rgb.shape[1]}x{rgb.shape[0]}) after {args.steps} {args.method} steps; {summary}")
  return x


if __name__ == "__main__":
  main()
