"""The frozen text-to-image prior: a static `Prior` (modules, tokenizer, schedule) and a params pytree.

`Prior` is hashable by identity and holds no arrays that change, so a jitted step closes over it;
the weights travel separately as an argument (`params = {"unet", "text_encoder", "vae"?}`) and are
never donated. Model space is NHWC everywhere in this project; the diffusers Flax UNet is NCHW and
the transposes live here only.

Two kinds: "latent" (Stable Diffusion 1.x/2.x: render → bilinear 512² → VAE encoder → × 0.18215, the
path the PyTorch ports of DreamFusion take) and "pixel" (no VAE: the UNet sees the image in [-1, 1],
as DreamFusion's 64×64 Imagen base model does).
"""

import dataclasses
import functools
from typing import Any

import diffusers.utils.logging as _diffusers_logging
import jax
import jax.numpy as jnp
import numpy as np
import transformers

# Before the Flax classes are imported: they log a deprecation warning on import and on every setup().
_diffusers_logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()

from diffusers import FlaxAutoencoderKL, FlaxUNet2DConditionModel  # noqa: E402
from transformers import CLIPTokenizer, FlaxCLIPTextModel  # noqa: E402

from dreamfusion_jax.prior import checkpoint  # noqa: E402
from dreamfusion_jax.prior import ensemble  # noqa: E402
from dreamfusion_jax.prior import guidance  # noqa: E402
from dreamfusion_jax.prior import schedule  # noqa: E402

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
KINDS = ("latent", "pixel")
PREDICTION_TYPES = ("epsilon", "v_prediction")
PriorNotFoundError = checkpoint.PriorNotFoundError


def resolve_dtype(dtype):
  """'float32' | 'bfloat16' (or the jnp dtype) → jnp dtype; anything else is a ValueError."""
  if isinstance(dtype, str):
    if dtype in DTYPES:
      return DTYPES[dtype]
  else:
    for value in DTYPES.values():
      if jnp.dtype(dtype) == jnp.dtype(value):
        return value
  raise ValueError(f"prior dtype={dtype!r}; allowed: {', '.join(DTYPES)}")


def cast_params(params, dtype):
  """Casts floating leaves to `dtype` (diffusers' to_bf16 calls the removed jax.tree_map)."""

  def cast(p):
    p = jnp.asarray(p)
    return p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p

  return jax.tree_util.tree_map(cast, params)


def _resize(x, side):
  """Bilinear resize of NHWC x to side×side (half-pixel centres, like align_corners=False)."""
  if x.shape[1] == side and x.shape[2] == side:
    return x
  return jax.image.resize(x, (x.shape[0], side, side, x.shape[3]), method="bilinear")


# diffusers' "text_time" addition (SDXL's micro-conditioning) initialises its embedding for 6 time ids and
# reads its input width from projection_class_embeddings_input_dim: a camera-conditioned prior's UNet is
# built for CAMERA_SLOTS ids, the camera's values fill the first of them and zero "text_embeds" the rest.
CAMERA_SLOTS = 6


# A prior may also take the camera as image channels beside x_t (the UNet's in_channels = out_channels +
# CAMERA_MAP_CHANNELS, as Stable Diffusion's inpainting UNet takes its mask): at every pixel, where it
# lies from the origin's projection, in world units at the origin's distance (camera_maps). The camera
# vector above reaches a convolutional UNet only through the timestep embedding, added alike at every
# pixel, so it has to learn from it where in the image that puts the object; the maps say so per pixel.
CAMERA_MAP_CHANNELS = 2


def camera_map_channels(unet) -> int:
  """How many of the UNet's input channels are camera maps (0 or CAMERA_MAP_CHANNELS)."""
  return int(unet.in_channels) - int(unet.out_channels)


def is_camera_conditioned(unet) -> bool:
  """Whether the UNet takes each view's camera: as a vector (addition_embed_type), as maps, or both."""
  return unet.addition_embed_type is not None or camera_map_channels(unet) > 0


def camera_maps(camera, side: int):
  """[B, side, side, 2] per-pixel (right, up) offsets from the origin's projection, in world units.

  camera [B, 4] is nerf.camera.conditioning: the apparent size of a world unit at the origin and the
  origin's image coordinates, both in image widths x 100 (u right, v up from the image centre). Pixel
  (row i, column j) has its centre at u = (j + 1/2) / side - 1/2, v = 1/2 - (i + 1/2) / side.
  """
  camera = jnp.asarray(camera, jnp.float32)
  size = camera[:, 1, None, None] / 100.0
  centres = (jnp.arange(side, dtype=jnp.float32) + 0.5) / side - 0.5
  right = (centres[None, None, :] - camera[:, 2, None, None] / 100.0) / size
  up = (-centres[None, :, None] - camera[:, 3, None, None] / 100.0) / size
  shape = (camera.shape[0], side, side)
  return jnp.stack([jnp.broadcast_to(right, shape), jnp.broadcast_to(up, shape)], axis=-1)


def camera_conditions(unet, camera, dtype, name: str = ""):
  """The UNet's added_cond_kwargs for camera inputs [B, k] (k <= CAMERA_SLOTS), or None for no vector.

  A camera-conditioned UNet (a camera vector or camera maps) needs the camera, a text-only one refuses it.
  """
  conditioned = is_camera_conditioned(unet)
  if (camera is None) == conditioned:
    raise ValueError(f"prior {name!r} is " + ("camera-conditioned: it needs each view's camera"
                     if conditioned else "text-only: it takes no camera"))
  if camera is None or unet.addition_embed_type is None:
    return None
  b, k = camera.shape
  pad = jnp.zeros((b, (CAMERA_SLOTS - k) * unet.addition_time_embed_dim), dtype)
  return {"text_embeds": pad, "time_ids": jnp.asarray(camera, dtype)}


def unet_inputs(unet, x, camera, dtype, name: str = ""):
  """(sample NCHW, added_cond_kwargs) for NHWC x [B, h, w, C]: x with the camera maps the UNet takes."""
  added = camera_conditions(unet, camera, dtype, name)
  if camera_map_channels(unet):
    x = jnp.concatenate([x, camera_maps(camera, x.shape[1]).astype(x.dtype)], axis=-1)
  return jnp.transpose(x, (0, 3, 1, 2)).astype(dtype), added


@dataclasses.dataclass(frozen=True, eq=False)
class Prior:
  """Static half of a frozen diffusion prior; every method takes the params pytree explicitly."""

  unet: FlaxUNet2DConditionModel  # Linen module, computes in `dtype`
  text_encoder: Any  # transformers' FlaxCLIPTextModule (the Linen module, not the params-holding wrapper)
  tokenizer: CLIPTokenizer
  vae: FlaxAutoencoderKL | None  # None for pixel priors
  kind: str  # "latent" | "pixel"
  alphas_cumprod: np.ndarray  # [T] float64, from the scheduler config
  sample_size: int  # model-space spatial side (64 for SD-2.1-base latents)
  channels: int  # model-space channels (4 latent, 3 pixel)
  image_size: int  # pixel side images are resized to before encoding (512 for SD)
  scaling_factor: float  # VAE latent scale (0.18215 for SD 1.x/2.x); 1 for pixel priors
  prediction_type: str  # "epsilon" | "v_prediction"
  dtype: Any = jnp.float32  # compute dtype of the modules (params are cast to it at load)
  name: str = ""  # folder or hub id it came from, for logs
  scheduler_config: Any = None  # the scheduler config dict (save_prior writes it back)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Prior kind={self.kind!r}; allowed: {', '.join(KINDS)}")
    if self.prediction_type not in PREDICTION_TYPES:
      raise ValueError(
          f"scheduler prediction_type={self.prediction_type!r}; allowed: {', '.join(PREDICTION_TYPES)}"
      )
    if self.kind == "latent" and self.vae is None:
      raise ValueError("a latent prior needs a VAE (vae=None)")

  @property
  def num_train_timesteps(self):
    return int(self.alphas_cumprod.shape[0])

  @property
  def camera_conditioned(self) -> bool:
    """Whether the UNet takes each view's camera (nerf.camera.conditioning) besides the text."""
    return is_camera_conditioned(self.unet)

  def tokenize(self, prompts):
    """Token ids [N, L] padded to the tokenizer's model_max_length (77 for CLIP), as the SD pipelines do."""
    length = min(int(self.tokenizer.model_max_length), self.text_encoder.config.max_position_embeddings)
    return self.tokenizer(
        list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="np"
    ).input_ids

  def encode_text(self, params, prompts):
    """CLIP last hidden states [N, L, D] (float32) for a list of prompts; called outside the step."""
    return _text_forward(self, params["text_encoder"], jnp.asarray(self.tokenize(prompts), jnp.int32))

  def encode_image(self, params, rgb):
    """rgb [B, H, W, 3] in [0, 1] → model space [B, h, w, C]; differentiable w.r.t. rgb.

    Latent: bilinear to image_size, 2x − 1, the VAE posterior's mean (no sampling: the SDS noise is the
    only noise), × scaling_factor. Pixel: bilinear to sample_size, 2x − 1.
    """
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
      raise ValueError(f"encode_image: rgb must be [B, H, W, 3], got shape {rgb.shape}")
    if self.kind == "pixel":
      return _resize(rgb, self.sample_size) * 2.0 - 1.0
    x = _resize(rgb, self.image_size) * 2.0 - 1.0
    x = jnp.transpose(x, (0, 3, 1, 2)).astype(self.dtype)  # the Flax VAE's encode takes NCHW
    posterior = self.vae.apply({"params": params["vae"]}, x, method="encode").latent_dist
    return posterior.mean.astype(jnp.float32) * self.scaling_factor

  def latents_from_render(self, x):
    """A render already in model space (latent-NeRF / SJC: the field outputs C channels) → [B, s, s, C]."""
    if x.ndim != 4 or x.shape[-1] != self.channels:
      raise ValueError(f"latents_from_render: expected [B, H, W, {self.channels}], got shape {x.shape}")
    return _resize(x, self.sample_size)

  def decode(self, params, x):
    """Model space [B, h, w, C] → rgb [B, H, W, 3] in [0, 1] (for images a person looks at)."""
    if self.kind == "pixel":
      rgb = x * 0.5 + 0.5
    else:
      z = (x / self.scaling_factor).astype(self.dtype)  # NHWC: decode transposes only if not
      out = self.vae.apply({"params": params["vae"]}, z, method="decode").sample
      rgb = jnp.transpose(out, (0, 2, 3, 1)).astype(jnp.float32) * 0.5 + 0.5
    return jnp.clip(rgb, 0.0, 1.0)

  def predict_noise(self, params, x_t, t, emb, camera=None):
    """ε̂(x_t, t, emb) NHWC float32; x_t [B, h, w, C], t int [B], emb [B, L, D]. v-predictions → ε.

    camera [B, 4] (nerf.camera.conditioning): required by a camera-conditioned UNet, refused otherwise.
    """
    sample, added = unet_inputs(self.unet, x_t, camera, self.dtype, self.name)
    t = jnp.asarray(t, jnp.int32)
    out = self.unet.apply({"params": params["unet"]}, sample, t, emb.astype(self.dtype),
                          added_cond_kwargs=added).sample
    out = jnp.transpose(out, (0, 2, 3, 1)).astype(jnp.float32)
    if self.prediction_type == "v_prediction":
      out = schedule.eps_from_v(x_t, out, schedule.gather(self.alphas_cumprod, t))
    return out

  def guided_noise(self, params, x_t, t, cond, uncond, guidance_scale, uncond_weight=1.0, camera=None):
    """Classifier-free guidance λ ε_u + ω(ε_c − ε_u) from ONE UNet call (guidance.guided_noise)."""
    return guidance.guided_noise(self.predict_noise, params, x_t, t, cond, uncond, guidance_scale,
                                 uncond_weight, camera)


@functools.partial(jax.jit, static_argnums=0)
def _text_forward(prior, text_params, ids):
  """The text encoder on token ids, compiled once per (prior, batch) — eager dispatch of a CLIP is slow."""
  positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
  out = prior.text_encoder.apply(
      {"params": text_params}, ids, jnp.ones_like(ids), positions, deterministic=True
  )
  return out.last_hidden_state.astype(jnp.float32)


def make_prior(unet, text_encoder, tokenizer, vae, scheduler_config, dtype, name=""):
  """Builds a Prior from modules + their configs (shared by the loader and random initialisation)."""
  kind = "pixel" if vae is None else "latent"
  sample_size = int(unet.config.sample_size)
  if vae is None:
    image_size, scaling = sample_size, 1.0
  else:
    # Every VAE block but the last halves the resolution (8x for SD's four blocks).
    image_size = sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    scaling = float(vae.config.get("scaling_factor", 0.18215))
  return Prior(
      unet=unet,
      text_encoder=text_encoder,
      tokenizer=tokenizer,
      vae=vae,
      kind=kind,
      alphas_cumprod=schedule.alphas_cumprod_from_config(scheduler_config),
      sample_size=sample_size,
      channels=int(unet.config.out_channels),
      image_size=image_size,
      scaling_factor=scaling,
      prediction_type=scheduler_config.get("prediction_type", "epsilon"),
      dtype=dtype,
      name=name,
      scheduler_config=dict(scheduler_config),
  )


def load_prior(
    model, dtype="float32", local_files_only=False, from_pt=False, require_vae=None, revision=None
):
  """Loads a diffusers-layout folder or hub id → (Prior, params).

  Args:
    model: local folder or hub id with tokenizer/, text_encoder/, unet/, vae/ (latent priors) and
      scheduler/scheduler_config.json.
    dtype: "float32" | "bfloat16": compute dtype of the modules and dtype of the params.
    local_files_only: never contact a hub (a hub id must then be in the local cache).
    from_pt: allow converting PyTorch pickles (.bin); needs torch. Flax msgpack and safetensors
      weights never need it.
    require_vae: True / False to insist on a latent / pixel prior; None infers it from
      model_index.json or the UNet's input channels.
    revision: hub revision (branch, tag or commit) for hub ids.

  Raises:
    PriorNotFoundError: before any weights are read, naming every missing component, where it looked
      and how to get it.
  """
  resolve_dtype(dtype)  # a bad dtype is refused before the folder is looked at
  found = locate_prior(model, local_files_only, from_pt, require_vae, revision)
  return load_found(found, model, dtype)


def locate_prior(model, local_files_only=False, from_pt=False, require_vae=None, revision=None) -> dict:
  """The component files of a prior (load_prior's arguments), checked complete; reads no weights.

  Raises:
    PriorNotFoundError: naming every missing component, where it looked and how to get it.
  """
  folder = checkpoint.resolve_folder(model, local_files_only, from_pt, revision)
  return checkpoint.check_folder(folder, model, from_pt, require_vae)


def load_found(found, model, dtype="float32"):
  """(Prior, params) from locate_prior's components; `model` names it in logs and errors."""
  dtype = resolve_dtype(dtype)
  unet, unet_params = checkpoint.load_diffusers_model(FlaxUNet2DConditionModel, found["unet"], dtype)
  vae, vae_params = None, None
  if "vae" in found:
    vae, vae_params = checkpoint.load_diffusers_model(FlaxAutoencoderKL, found["vae"], dtype)
  text_model, text_params = checkpoint.load_text_encoder(FlaxCLIPTextModel, found["text_encoder"], dtype)
  tokenizer = CLIPTokenizer.from_pretrained(found["tokenizer"])
  scheduler_config = schedule.load_scheduler_config(found["scheduler"])
  prior = make_prior(unet, text_model.module, tokenizer, vae, scheduler_config, dtype, str(model))
  params = {"unet": unet_params, "text_encoder": text_params}
  if vae is not None:
    params["vae"] = vae_params
  # Uncommitted on the default device, not where from_pretrained commits them (the host CPU).
  return prior, checkpoint.on_default_device(cast_params(params, dtype))


def load_from_config(config):
  """load_prior with the fields of `config.prior` (configs/base.py): one prior, or with `prior.ensemble`
  set, a PriorEnsemble of prior.model and those (ensemble.py). Every folder is checked before any
  weights are read."""
  p = config.prior
  resolve_dtype(p.dtype)
  options = dict(local_files_only=p.local_files_only, from_pt=p.from_pt, revision=p.get("revision", None))
  models = [(p.model, "config.prior.model")]
  models += [(m, f"config.prior.ensemble[{i}]") for i, m in enumerate(p.get("ensemble", ()))]
  found = []
  for model, field in models:
    try:
      found.append(locate_prior(model, **options))
    except PriorNotFoundError as e:
      raise PriorNotFoundError(f"{field}: {e}") from e
  loaded = [load_found(f, model, p.dtype) for f, (model, _) in zip(found, models)]
  if len(loaded) == 1:
    return loaded[0]
  return ensemble.combine(loaded)
