"""Small helpers shared by the tests."""

import os

import jax
import jax.numpy as jnp

from dreamfusion_jax import config_files
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import prior_model
from dreamfusion_jax.shapes import tokenizer as tokenizer_lib

# A shapes prior small enough to build in a second: one text layer, two UNet levels of 32 channels.
TINY_PRIOR = dict(text_width=32, text_layers=1, text_heads=2, channels=(32, 32), unet_heads=2)


def override(config, **overrides):
  """Sets config fields named with "__" for "." (nerf__width=8 sets config.nerf.width); returns config."""
  for dotted, value in overrides.items():
    *path, last = dotted.split("__")
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config


def loaded_config(section: str, **fields):
  """configs/base.py as the training step loads it, with `fields` of one section set (sds, sjc, ...)."""
  return override(config_files.load(), **{f"{section}__{k}": v for k, v in fields.items()})


def tiny_prior(tok_dir: str, seed: int = 0, **spec_fields):
  """A tiny random shapes prior on the caption tokenizer at tok_dir (saved there first if missing).

  spec_fields override TINY_PRIOR's. Returns (tokenizer, spec, text encoder, UNet, params).
  """
  if os.path.exists(tok_dir):
    tok = tokenizer_lib.load_tokenizer(tok_dir)
  else:
    tok = tokenizer_lib.save_tokenizer(tok_dir, captions.caption_table())
  spec = prior_model.PriorSpec(vocab_size=len(tok), **{**TINY_PRIOR, **spec_fields})
  text, unet = prior_model.build(spec)
  params = prior_model.init_params(jax.random.PRNGKey(seed), spec, text, unet)
  return tok, spec, text, unet, params


def learned_camera_layer(unet_params, seed: int):
  """UNet params of a camera-conditioned prior with a standard-normal last camera layer: one that has
  learned something, so the camera changes the predictions (add_camera_input starts it at zero)."""
  leaves, tree = jax.tree_util.tree_flatten(unet_params["add_embedding"]["linear_2"])
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  layer = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
  return dict(unet_params, add_embedding=dict(unet_params["add_embedding"], linear_2=layer))


def params_after_two_steps(text, unet, params, tok, camera_lr_scale: float):
  """A prior's params after train_prior's step has run twice from `params` (the first step's learning
  rate is 0, the warm-up's), at this camera_lr_scale: what the step's second update did to them."""
  from configs import base as base_config  # pylint: disable=g-import-not-at-top
  from dreamfusion_jax.shapes import train_prior  # pylint: disable=g-import-not-at-top
  optimizer = train_prior.make_optimizer(1e-3, 1)
  table = jnp.asarray(tokenizer_lib.encode(tok, captions.caption_table()))
  state = train_prior.TrainState(
      step=jnp.zeros((), jnp.int32), params=jax.tree_util.tree_map(jnp.copy, params),
      ema=jax.tree_util.tree_map(jnp.copy, params), opt_state=optimizer.init(params))
  step_fn = train_prior.make_train_step(text, unet, optimizer, base_config.get_config(), 8,
                                        camera_lr_scale=camera_lr_scale)
  state, _ = step_fn(state, jax.random.PRNGKey(0), table)
  return step_fn(state, jax.random.PRNGKey(0), table)[0].params


def save_export(out: str, spec, params, tok_dir: str, spec_fields: dict, **record) -> str:
  """Saves a tiny prior as train_prior exports it (float32), its training.json's spec being spec_fields.

  record adds other training.json fields (e.g. step=3). Returns out, for warm_start_from_weights.
  """
  info = {**record, "spec": dict(spec_fields, channels=list(spec_fields["channels"]))}
  prior_model.save_diffusers(out, spec, params, tok_dir, info, dtype=jnp.float32)
  return out

