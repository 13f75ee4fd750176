"""Randomly initialised priors from written-down architectures, and saving any prior to disk.

Random weights cost exactly what trained ones cost, so "sd21-base" (Stable Diffusion 2.1-base's real
configs: UNet 865M, VAE 84M, OpenCLIP-H text encoder 340M parameters) measures step time at full scale
without a download. "tiny-latent" / "tiny-pixel" are the same code paths at toy sizes for CPU tests.
`save_prior` writes the diffusers layout, so `load_prior(path)` exercises the Stable Diffusion loader.
"""

import copy
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import unfreeze
from flax.traverse_util import flatten_dict, unflatten_dict
from transformers import CLIPTextConfig, CLIPTokenizer, FlaxCLIPTextModel

from dreamfusion_jax.prior import clip_vocab
from dreamfusion_jax.prior import stable_diffusion as sd
from dreamfusion_jax.prior.stable_diffusion import FlaxAutoencoderKL, FlaxUNet2DConditionModel

# Stable Diffusion 1.x/2.x were trained with this schedule (scaled_linear, Rombach et al. 2022).
SD_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

# stabilityai/stable-diffusion-2-1-base: unet/, vae/, text_encoder/ config.json (the fields that matter).
SD21_BASE = {
    "unet": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "attention_head_dim": [5, 10, 20, 20],  # diffusers' historical name: these are head COUNTS
        "cross_attention_dim": 1024,
        "use_linear_projection": True,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    },
    "text_encoder": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 23,  # OpenCLIP ViT-H/14 minus its last layer (SD 2.x uses the penultimate)
        "num_attention_heads": 16,
        "max_position_embeddings": 77,
        "vocab_size": 49408,
        "hidden_act": "gelu",
        "projection_dim": 512,
    },
    "scheduler": SD_SCHEDULER,
}

# Toy sizes: GroupNorm(32) is hard-wired in the Flax UNet, so 32 channels is the narrowest block, and
# every extra level roughly doubles the XLA compile time that dominates CPU tests.
_TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "vocab_size": 0,  # the tokenizer's size
    "hidden_act": "quick_gelu",
}
TINY_LATENT = {
    "unet": {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        # One level (no resampling): the cross-attention down/up blocks plus the mid block.
        "down_block_types": ["CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D"],
        "block_out_channels": [32],
        "layers_per_block": 1,
        "attention_head_dim": 2,
        "cross_attention_dim": 32,
        "use_linear_projection": True,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 16,
        "scaling_factor": 0.18215,
    },
    "text_encoder": _TINY_TEXT,
    "scheduler": SD_SCHEDULER,
}
TINY_PIXEL = {
    "unet": {
        "sample_size": 16,
        "in_channels": 3,
        "out_channels": 3,
        # One level, text cross-attention only in the mid block: the cheapest UNet to compile on a CPU.
        "down_block_types": ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"],
        "block_out_channels": [32],
        "layers_per_block": 1,
        "attention_head_dim": 2,
        "cross_attention_dim": 32,
        "use_linear_projection": True,
    },
    "vae": None,
    "text_encoder": _TINY_TEXT,
    # DDPM's linear schedule (Ho et al. 2020), the usual choice for pixel-space models.
    "scheduler": {"_class_name": "DDIMScheduler", "beta_schedule": "linear", "beta_start": 1e-4,
                  "beta_end": 0.02, "num_train_timesteps": 1000, "prediction_type": "epsilon"},
}
SPECS = {"sd21-base": SD21_BASE, "tiny-latent": TINY_LATENT, "tiny-pixel": TINY_PIXEL}
SPEC_KEYS = ("unet", "vae", "text_encoder", "scheduler")


def _resolve_spec(spec):
  if isinstance(spec, str):
    if spec not in SPECS:
      raise ValueError(f"prior spec={spec!r}; allowed: {', '.join(SPECS)} or a dict with keys {SPEC_KEYS}")
    return spec, copy.deepcopy(SPECS[spec])
  missing = [k for k in SPEC_KEYS if k not in spec]
  if missing:
    raise ValueError(f"prior spec dict is missing keys {missing} (needs {SPEC_KEYS}; vae may be None)")
  return "custom", copy.deepcopy(dict(spec))


def make_tokenizer(words=clip_vocab.DEFAULT_WORDS):
  """A CLIPTokenizer over the tiny offline vocabulary (written to a temporary folder and read back)."""
  with tempfile.TemporaryDirectory() as d:
    return CLIPTokenizer.from_pretrained(clip_vocab.write_clip_tokenizer(d, words))


def random_params(shapes, rng):
  """Random params with the shapes of `shapes` (from jax.eval_shape of the module's init).

  LeCun-normal kernels (Flax's default for Dense/Conv), zero biases, unit norm scales, N(0, 0.02²)
  embeddings (CLIP's). Drawn with numpy: running the modules' own initialisers compiles one XLA
  program per parameter shape (or one huge one): tens of seconds for a toy UNet on a 2-core CPU.
  """
  out = {}
  for path, leaf in flatten_dict(unfreeze(shapes)).items():
    shape, name = tuple(leaf.shape), path[-1]
    if name == "scale":
      value = np.ones(shape, np.float32)
    elif name == "bias":
      value = np.zeros(shape, np.float32)
    elif name == "embedding":
      value = 0.02 * rng.standard_normal(shape, np.float32)
    else:
      fan_in = max(1, int(np.prod(shape[:-1])))
      value = rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)
    out[path] = jnp.asarray(value)
  return unflatten_dict(out)


def build_random_prior(spec, seed=0, dtype="float32", words=clip_vocab.DEFAULT_WORDS, abstract=False):
  """(Prior, params) with random weights for a named spec ("sd21-base", "tiny-latent", "tiny-pixel")
  or a dict {"unet": UNet config, "vae": VAE config | None, "text_encoder": CLIPTextConfig kwargs,
  "scheduler": scheduler config}. `words` become single tokens of the offline tokenizer.

  abstract=True gives params as jax.ShapeDtypeStruct leaves (nothing allocated): enough to lower a
  step and read XLA's cost analysis of a full-size model on a small machine.
  """
  name, spec = _resolve_spec(spec)
  dtype = sd.resolve_dtype(dtype)
  tokenizer = make_tokenizer(words)
  key = jax.random.PRNGKey(0)  # only feeds eval_shape
  if abstract:
    init = lambda shapes: jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, dtype), shapes)
  else:
    rng = np.random.default_rng(seed)
    init = lambda shapes: random_params(shapes, rng)

  text_kwargs = dict(spec["text_encoder"])
  text_kwargs["vocab_size"] = max(len(tokenizer), int(text_kwargs.get("vocab_size", 0)))
  text_config = CLIPTextConfig(
      **text_kwargs,
      bos_token_id=tokenizer.bos_token_id,
      eos_token_id=tokenizer.eos_token_id,
      pad_token_id=tokenizer.pad_token_id,
  )
  if text_config.hidden_size != spec["unet"]["cross_attention_dim"]:
    raise ValueError("spec: text_encoder hidden_size must equal unet cross_attention_dim")
  text_model = FlaxCLIPTextModel(text_config, dtype=dtype, _do_init=False)
  params = {"text_encoder": init(jax.eval_shape(lambda k: text_model.init_weights(k, (1, 1)), key))}

  unet = FlaxUNet2DConditionModel.from_config(spec["unet"], dtype=dtype)
  params["unet"] = init(jax.eval_shape(unet.init_weights, key))
  vae = None
  if spec["vae"] is not None:
    vae = FlaxAutoencoderKL.from_config(spec["vae"], dtype=dtype)
    params["vae"] = init(jax.eval_shape(vae.init_weights, key))
  prior = sd.make_prior(
      unet, text_model.module, tokenizer, vae, spec["scheduler"], dtype, name=f"random:{name}"
  )
  return prior, params if abstract else sd.cast_params(params, dtype)


def _scheduler_config(prior):
  if prior.scheduler_config is not None:
    return prior.scheduler_config
  # No config kept: write the betas themselves, β_t = 1 − ᾱ_t / ᾱ_{t−1}.
  ab = np.asarray(prior.alphas_cumprod, np.float64)
  betas = 1.0 - ab / np.concatenate([[1.0], ab[:-1]])
  return {"_class_name": "DDIMScheduler", "num_train_timesteps": int(ab.shape[0]),
          "trained_betas": betas.tolist(), "prediction_type": prior.prediction_type}


def save_prior(prior, params, path):
  """Writes (prior, params) in the diffusers layout that `load_prior(path)` reads. Returns path."""
  path = str(path)
  os.makedirs(path, exist_ok=True)
  prior.unet.save_pretrained(os.path.join(path, "unet"), params=params["unet"])
  index = {
      "_class_name": "FlaxStableDiffusionPipeline",
      "unet": ["diffusers", "FlaxUNet2DConditionModel"],
      "text_encoder": ["transformers", "FlaxCLIPTextModel"],
      "tokenizer": ["transformers", "CLIPTokenizer"],
      "scheduler": ["diffusers", "FlaxDDIMScheduler"],
  }
  if prior.vae is not None:
    prior.vae.save_pretrained(os.path.join(path, "vae"), params=params["vae"])
    index["vae"] = ["diffusers", "FlaxAutoencoderKL"]
  wrapper = FlaxCLIPTextModel(prior.text_encoder.config, _do_init=False)
  wrapper.save_pretrained(os.path.join(path, "text_encoder"), params=params["text_encoder"])
  prior.tokenizer.save_pretrained(os.path.join(path, "tokenizer"))
  os.makedirs(os.path.join(path, "scheduler"), exist_ok=True)
  with open(os.path.join(path, "scheduler", "scheduler_config.json"), "w") as f:
    json.dump(_scheduler_config(prior), f, indent=2)
  with open(os.path.join(path, "model_index.json"), "w") as f:
    json.dump(index, f, indent=2)
  return path
