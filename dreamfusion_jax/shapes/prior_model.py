"""The shipped pixel-space prior: a tiny CLIP text encoder and a 32x32 RGB UNet in the diffusers layout.

DreamFusion's prior (Imagen) was a 64x64 pixel-space model; this is the same kind of model, small
enough to train on a CPU: diffusers' FlaxUNet2DConditionModel with 3 input/output channels, attention
only at 16x16 and 8x8 (attention at full resolution costs 16x more at 32x32), cross-attending to
transformers' FlaxCLIPTextModel. The folder it is saved to has Stable Diffusion's layout minus the VAE:
tokenizer/, text_encoder/, unet/, scheduler/, so the project's one loader reads both.

Images are scaled to [-1, 1] (x = 2 * rgb - 1) before noising, as DDPM does; the noise schedule is the
DDPM linear one (beta 1e-4 .. 0.02 over 1000 steps, Ho et al. 2020), epsilon prediction.
"""

import json
import os
import shutil
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.prior import stable_diffusion

RESOLUTION = 32  # image side of the prior
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02  # DDPM's linear schedule (Ho et al. 2020), made for 32x32 pixels
# CLIP initialises token embeddings with std 0.02, as small as its position embeddings, so a text
# encoder trained from scratch starts out giving almost the same context for every prompt; a UNet
# trained jointly with it then learns to ignore the context (measured: after 2,000 steps, true and
# wrong captions gave the same denoising error to within 1%). Larger token embeddings make prompts
# distinguishable from the first step.
TOKEN_EMBEDDING_STD = 0.5


@flax.struct.dataclass
class PriorSpec:
  """Sizes of the prior; the defaults are the shipped model's."""
  vocab_size: int = 597  # set from the tokenizer at training time
  text_width: int = 256  # CLIP hidden size = the UNet's cross_attention_dim
  text_layers: int = 2
  text_heads: int = 4
  channels: tuple[int, ...] = (32, 64, 128)  # UNet block widths at 32, 16, 8 pixels
  layers_per_block: int = 1
  unet_heads: int = 4
  # 0: text only (the shipped prior). > 0: the UNet also takes the camera (nerf.camera.conditioning),
  # each value sinusoidally embedded in this many channels and added to the timestep embedding
  # (diffusers' "text_time" addition, SDXL's micro-conditioning).
  camera_dim: int = 0
  # True: the UNet also takes stable_diffusion.camera_maps as two more input channels (where each pixel
  # lies from the origin's projection), beside or instead of the camera vector above.
  camera_maps: bool = False


def text_config(spec: PriorSpec):
  """transformers.CLIPTextConfig for the text encoder (77 positions, like CLIP's)."""
  import transformers  # pylint: disable=g-import-not-at-top
  return transformers.CLIPTextConfig(
      vocab_size=spec.vocab_size, hidden_size=spec.text_width, intermediate_size=2 * spec.text_width,
      num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
      max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=spec.text_width,
      # Ids the tokenizer gives BOS/EOS/pad (the two last vocabulary entries).
      bos_token_id=spec.vocab_size - 2, eos_token_id=spec.vocab_size - 1, pad_token_id=spec.vocab_size - 1)


def unet_kwargs(spec: PriorSpec) -> dict[str, Any]:
  """Constructor arguments of diffusers.FlaxUNet2DConditionModel for a 3-channel pixel prior."""
  n = len(spec.channels)
  return dict(
      sample_size=RESOLUTION, out_channels=3,
      in_channels=3 + (stable_diffusion.CAMERA_MAP_CHANNELS if spec.camera_maps else 0),
      down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
      up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
      block_out_channels=tuple(spec.channels), layers_per_block=spec.layers_per_block,
      attention_head_dim=spec.unet_heads,  # Flax UNets read this as the number of heads
      cross_attention_dim=spec.text_width, use_linear_projection=True, **camera_kwargs(spec.camera_dim))


def camera_kwargs(camera_dim: int) -> dict[str, Any]:
  """The UNet constructor's arguments for a camera input (stable_diffusion.camera_conditions)."""
  if not camera_dim:
    return {}
  return dict(addition_embed_type="text_time", addition_time_embed_dim=camera_dim,
              projection_class_embeddings_input_dim=stable_diffusion.CAMERA_SLOTS * camera_dim)


def add_camera_input(key: jax.Array, spec: PriorSpec, unet_params) -> dict[str, Any]:
  """Text-only UNet params with a camera input added that starts at zero: the same predictions at first.

  The new embedding's first layer is freshly initialised and its last is zero, so its output (added to
  the timestep embedding) is 0 until training moves it, while its gradient is not.
  """
  import diffusers  # pylint: disable=g-import-not-at-top
  fresh = diffusers.FlaxUNet2DConditionModel(**unet_kwargs(spec)).init_weights(key)
  add = flax.core.unfreeze(fresh["add_embedding"])
  add["linear_2"] = jax.tree_util.tree_map(jnp.zeros_like, add["linear_2"])
  return dict(unet_params, add_embedding=add)


def add_camera_maps(unet_params) -> dict[str, Any]:
  """UNet params with the camera maps' input channels added to conv_in at zero: the same predictions.

  Flax's conv kernel is [kh, kw, in, out]; the new input channels' slice starts at 0, its gradient not.
  """
  kernel = jnp.asarray(unet_params["conv_in"]["kernel"])
  extra = jnp.zeros(kernel.shape[:2] + (stable_diffusion.CAMERA_MAP_CHANNELS,) + kernel.shape[3:],
                    kernel.dtype)
  conv_in = dict(unet_params["conv_in"], kernel=jnp.concatenate([kernel, extra], axis=2))
  return dict(unet_params, conv_in=conv_in)


def build(spec: PriorSpec):
  """(text_encoder, unet) modules: a transformers FlaxCLIPTextModel and a diffusers Flax UNet."""
  import diffusers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  diffusers.utils.logging.set_verbosity_error()
  transformers.utils.logging.set_verbosity_error()
  text = transformers.FlaxCLIPTextModel(text_config(spec), _do_init=False)
  unet = diffusers.FlaxUNet2DConditionModel(**unet_kwargs(spec))
  return text, unet


def init_params(key: jax.Array, spec: PriorSpec, text, unet) -> dict[str, Any]:
  """{'text': ..., 'unet': ...} float32 parameters."""
  text_key, unet_key = jax.random.split(key)
  text_params = scale_token_embeddings(flax.core.unfreeze(text.init_weights(text_key, (1, 77))))
  unet_params = unet.init_weights(unet_key)
  return {"text": text_params, "unet": flax.core.unfreeze(unet_params)}


def scale_token_embeddings(text_params, std: float = TOKEN_EMBEDDING_STD):
  """Text-encoder params with the token embedding table rescaled to standard deviation `std`."""
  emb = text_params["text_model"]["embeddings"]["token_embedding"]["embedding"]
  scaled = jnp.asarray(emb) * (std / jnp.std(jnp.asarray(emb)))
  embeddings = dict(text_params["text_model"]["embeddings"], token_embedding={"embedding": scaled})
  return dict(text_params, text_model=dict(text_params["text_model"], embeddings=embeddings))


def encode_text(text, params, ids: jax.Array) -> jax.Array:
  """CLIP's last hidden state [B, 77, width], the conditioning Stable Diffusion pipelines use."""
  return text.module.apply({"params": params}, ids, jnp.ones_like(ids),
                           jnp.broadcast_to(jnp.arange(ids.shape[-1]), ids.shape)).last_hidden_state


def predict_noise(unet, params, x: jax.Array, t: jax.Array, context: jax.Array,
                  camera: jax.Array | None = None) -> jax.Array:
  """epsilon prediction for NHWC images x [B, H, W, 3] (the Flax UNet itself is NCHW).

  camera [B, 4] (nerf.camera.conditioning) is required by a camera-conditioned UNet (a camera vector,
  camera maps or both), refused otherwise.
  """
  sample, added = stable_diffusion.unet_inputs(unet, x, camera, jnp.float32)
  out = unet.apply({"params": params}, sample, t, context, added_cond_kwargs=added).sample
  return jnp.transpose(out, (0, 2, 3, 1))


def alphas_cumprod() -> np.ndarray:
  """alpha-bar_t of the training schedule, [1000]."""
  betas = np.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=np.float64)
  return np.cumprod(1.0 - betas).astype(np.float32)


def num_params(tree) -> int:
  return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(tree)))


def save_diffusers(directory: str, spec: PriorSpec, params, tokenizer_dir: str, info: dict,
                   dtype=jnp.float16) -> None:
  """Writes the diffusers layout (tokenizer/, text_encoder/, unet/, scheduler/) plus training.json.

  The tokenizer files are copied from `tokenizer_dir`, the one the model was trained with.
  """
  import diffusers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  cast = lambda tree: jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), tree)
  os.makedirs(os.path.join(directory, "tokenizer"), exist_ok=True)
  for name in os.listdir(tokenizer_dir):
    shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(directory, "tokenizer", name))
  text = transformers.FlaxCLIPTextModel(text_config(spec), _do_init=False)
  text.save_pretrained(os.path.join(directory, "text_encoder"), params=cast(params["text"]))
  unet = diffusers.FlaxUNet2DConditionModel(**unet_kwargs(spec))
  unet.save_pretrained(os.path.join(directory, "unet"), params=cast(params["unet"]))
  scheduler = diffusers.FlaxDDPMScheduler(
      num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
      beta_schedule="linear", prediction_type="epsilon", clip_sample=True)
  scheduler.save_config(os.path.join(directory, "scheduler"))
  with open(os.path.join(directory, "training.json"), "w") as f:
    json.dump(info, f, indent=2)
