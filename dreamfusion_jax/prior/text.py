"""Prompt embeddings with DreamFusion's view-dependent conditioning.

DreamFusion (§3.2) appends "front view", "side view", "back view" or "overhead view" to the prompt
depending on the sampled camera, which helps against multi-faced (Janus) results. The five prompts
(four views + the negative/unconditional one) are encoded once, outside the step; inside the step
`select` only gathers (or blends) rows of a small array.
"""

import flax
import jax
import jax.numpy as jnp

from dreamfusion_jax.nerf.camera import VIEW_NAMES

FRONT, SIDE, BACK, OVERHEAD = (VIEW_NAMES.index(n) for n in ("front", "side", "back", "overhead"))


@flax.struct.dataclass
class TextEmbeddings:
  cond: jax.Array  # [4, L, D] per view label (front, side, back, overhead); equal rows if not view-dependent
  uncond: jax.Array  # [L, D] the negative prompt ("" by default): CFG's unconditional branch


def view_prompts(prompt, view_dependent=True):
  """The four conditional prompts, indexed by view label: "{prompt}, {view} view" (DreamFusion §3.2)."""
  if not isinstance(prompt, str) or not prompt.strip():
    raise ValueError(f"prompt={prompt!r}: a non-empty text prompt is required (config.prompt)")
  if not view_dependent:
    return [prompt] * len(VIEW_NAMES)
  return [f"{prompt}, {name} view" for name in VIEW_NAMES]


def embed_prompts(prior, params, prompt, negative_prompt="", view_dependent=True):
  """Encodes the view prompts and the negative prompt once → TextEmbeddings (call outside the step)."""
  prompts = view_prompts(prompt, view_dependent)
  if not view_dependent:
    emb = prior.encode_text(params, [prompt, negative_prompt])
    return TextEmbeddings(cond=jnp.repeat(emb[:1], len(VIEW_NAMES), axis=0), uncond=emb[1])
  emb = prior.encode_text(params, prompts + [negative_prompt])
  return TextEmbeddings(cond=emb[:-1], uncond=emb[-1])


def azimuth_blend(emb, azimuth):
  """Front/side/back embeddings blended linearly in azimuth (degrees; 0 front, 90/270 side, 180 back)."""
  az = jnp.mod(azimuth, 360.0)
  az = jnp.where(az > 180.0, 360.0 - az, az)  # the two sides share one prompt: fold onto [0, 180]
  r = (jnp.minimum(az, 90.0) / 90.0)[:, None, None]
  front_side = (1.0 - r) * emb.cond[FRONT] + r * emb.cond[SIDE]
  r = (jnp.maximum(az - 90.0, 0.0) / 90.0)[:, None, None]
  side_back = (1.0 - r) * emb.cond[SIDE] + r * emb.cond[BACK]
  return jnp.where((az <= 90.0)[:, None, None], front_side, side_back)


def select(emb, view, azimuth, interpolate=False):
  """(cond [B, L, D], uncond [B, L, D]) for view labels [B] and azimuths [B] (degrees).

  With `interpolate`, front/side/back are blended by azimuth instead of picked by label; overhead views
  keep the overhead prompt either way.
  """
  view = jnp.asarray(view, jnp.int32)
  cond = emb.cond[view]
  if interpolate:
    blended = azimuth_blend(emb, jnp.asarray(azimuth, jnp.float32))
    cond = jnp.where((view == OVERHEAD)[:, None, None], cond, blended)
  uncond = jnp.broadcast_to(emb.uncond, cond.shape)
  return cond, uncond
