"""Prompt embeddings with DreamFusion's view-dependent conditioning.

DreamFusion (§3.2) appends "front view", "side view", "back view" or "overhead view" to the prompt
depending on the sampled camera, which helps against multi-faced (Janus) results. The five prompts
(four views + the negative/unconditional one) are encoded once, outside the step; inside the step
`select` only gathers (or blends) rows of a small array.

Optionally, textureless-shaded views get their own prompt: the prompt with some words dropped
(config.prior.textureless_drop_words). A textureless render is white whatever the albedo, so "a red
cube" describes it falsely; a prior trained on captioned renders (the embedded one) only ever saw white
objects captioned without a colour. The paper uses one prompt for every shading, the default here.
"""

import re
from typing import Optional, Sequence

import flax
import jax
import jax.numpy as jnp

from dreamfusion_jax.nerf.camera import VIEW_NAMES

FRONT, SIDE, BACK, OVERHEAD = (VIEW_NAMES.index(n) for n in ("front", "side", "back", "overhead"))


@flax.struct.dataclass
class TextEmbeddings:
  cond: jax.Array  # [4, L, D] per view label (front, side, back, overhead); equal rows if not view-dependent
  uncond: jax.Array  # [L, D] the negative prompt ("" by default): CFG's unconditional branch
  # [4, L, D] like cond, for textureless-shaded views; None: textureless views use cond.
  textureless: Optional[jax.Array] = None


def view_prompts(prompt, view_dependent=True):
  """The four conditional prompts, indexed by view label: "{prompt}, {view} view" (DreamFusion §3.2)."""
  if not isinstance(prompt, str) or not prompt.strip():
    raise ValueError(f"prompt={prompt!r}: a non-empty text prompt is required (config.prompt)")
  if not view_dependent:
    return [prompt] * len(VIEW_NAMES)
  return [f"{prompt}, {name} view" for name in VIEW_NAMES]


def indefinite_article(word: str) -> str:
  """ "an" before a vowel letter, else "a" (the spelling rule; enough for the embedded world's words)."""
  return "an" if word[:1].lower() in "aeiou" else "a"


def drop_words(prompt: str, words: Sequence[str]) -> str:
  """`prompt` without the whole words in `words` (case-insensitive), spaces collapsed.

  drop_words("a Red cube", ["red"]) == "a cube"; an article left before a new word is re-chosen,
  drop_words("an orange cone", ["orange"]) == "a cone". Raises if nothing of the prompt would be left.
  """
  if not words:
    return prompt
  drop = {x.lower() for x in words}
  kept, after_drop = [], []
  for word in prompt.split():
    if re.sub(r"\W", "", word.lower()) in drop:
      if after_drop:
        after_drop[-1] = True
      continue
    kept.append(word)
    after_drop.append(False)
  if not kept:
    raise ValueError(f"config.prior.textureless_drop_words={tuple(words)!r} removes every word of the "
                     f"prompt {prompt!r}; drop fewer words or set it to ()")
  for i in range(len(kept) - 1):
    if after_drop[i] and kept[i].lower() in ("a", "an"):
      article = indefinite_article(kept[i + 1])
      kept[i] = article.capitalize() if kept[i][0].isupper() else article
  return " ".join(kept)


def embed_prompts(prior, params, prompt, negative_prompt="", view_dependent=True,
                  textureless_drop_words: Sequence[str] = ()):
  """Encodes the view prompts and the negative prompt once → TextEmbeddings (call outside the step).

  With `textureless_drop_words`, the prompt without those words is encoded too, for textureless views
  (only if dropping them changes the prompt).
  """
  prompts = view_prompts(prompt, view_dependent)  # validates the prompt
  plain = drop_words(prompt, textureless_drop_words)
  extra = view_prompts(plain, view_dependent) if plain != prompt else []
  texts = prompts + extra + [negative_prompt]
  unique = list(dict.fromkeys(texts))  # without view suffixes the 4 view prompts are one text
  emb = prior.encode_text(params, unique)[jnp.asarray([unique.index(t) for t in texts])]
  n = len(VIEW_NAMES)
  return TextEmbeddings(cond=emb[:n], uncond=emb[-1], textureless=emb[n:2 * n] if extra else None)


def azimuth_blend(table, azimuth):
  """Front/side/back rows of `table` [4, L, D] blended linearly in azimuth (degrees; 0 front, 90/270
  side, 180 back)."""
  az = jnp.mod(azimuth, 360.0)
  az = jnp.where(az > 180.0, 360.0 - az, az)  # the two sides share one prompt: fold onto [0, 180]
  r = (jnp.minimum(az, 90.0) / 90.0)[:, None, None]
  front_side = (1.0 - r) * table[FRONT] + r * table[SIDE]
  r = (jnp.maximum(az - 90.0, 0.0) / 90.0)[:, None, None]
  side_back = (1.0 - r) * table[SIDE] + r * table[BACK]
  return jnp.where((az <= 90.0)[:, None, None], front_side, side_back)


def _select_views(table, view, azimuth, interpolate):
  cond = table[view]
  if interpolate:
    blended = azimuth_blend(table, jnp.asarray(azimuth, jnp.float32))
    cond = jnp.where((view == OVERHEAD)[:, None, None], cond, blended)
  return cond


def select(emb, view, azimuth, interpolate=False, textureless=None):
  """(cond [B, L, D], uncond [B, L, D]) for view labels [B] and azimuths [B] (degrees).

  With `interpolate`, front/side/back are blended by azimuth instead of picked by label; overhead views
  keep the overhead prompt either way. `textureless` (bool [B], optional) marks textureless-shaded
  views, which take emb.textureless when it exists.
  """
  view = jnp.asarray(view, jnp.int32)
  cond = _select_views(emb.cond, view, azimuth, interpolate)
  if emb.textureless is not None and textureless is not None:
    plain = _select_views(emb.textureless, view, azimuth, interpolate)
    cond = jnp.where(jnp.asarray(textureless)[:, None, None], plain, cond)
  uncond = jnp.broadcast_to(emb.uncond, cond.shape)
  return cond, uncond
