"""R-precision as DreamFusion defines it (Sec. 4, after Park et al. 2021 / Jain et al. 2022).

For each render of a trained scene, every caption of the prompt set is scored against the image; the
retrieval is right when the scene's own caption scores highest. "color" R-precision uses albedo
renders, "geo" R-precision textureless renders (shape only: they carry no colour). Renders are taken
from several views around the object at 30 degrees elevation.

Scorers map (images [B, H, W, 3] in [0, 1], prompts) to scores [B, P]. Two are provided: the judge
trained on the embedded world (dreamfusion_jax/shapes/judge.py) and a real CLIP (transformers'
FlaxCLIPModel) when its weights are present.
"""

import hashlib
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.nerf import camera

Scorer = Callable[[jax.Array, Sequence[str]], jax.Array]

ELEVATION = 30.0  # DreamFusion scores renders at 30 degrees elevation

# CLIP's image normalisation (Radford et al. 2021; the values in CLIP's preprocessing config).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def scoring_cameras(config, num_views: int, resolution: int) -> camera.Cameras:
  """The scored views of a run of `config`: a turntable at ELEVATION from its mean camera distance."""
  return camera.orbit(num_views, resolution, elevation=ELEVATION,
                      distance=float(np.mean(config.camera.distance_range)))


def retrieval_hits(scores: jax.Array, true_index: Sequence[int]) -> np.ndarray:
  """[B] bool: the true caption scores at least as high as every other caption.

  Ties count as hits: the judge's shape-only score gives every colour of the right shape the same
  value, and "geo" R-precision asks only whether the shape was retrieved.
  """
  scores = np.asarray(scores, np.float64)
  true = scores[np.arange(scores.shape[0]), np.asarray(true_index)]
  return true >= scores.max(axis=-1) - 1e-6 * np.maximum(1.0, np.abs(true))


def r_precision(scorer: Scorer, images: jax.Array, true_index: Sequence[int],
                prompts: Sequence[str]) -> float:
  """Fraction of `images` whose caption `prompts[true_index[i]]` is retrieved among `prompts`."""
  if len(true_index) != images.shape[0]:
    raise ValueError(f"true_index has {len(true_index)} entries for {images.shape[0]} images")
  return float(np.mean(retrieval_hits(scorer(images, prompts), true_index)))


def judge_scorer(heads: Sequence[str]) -> Scorer:
  """The embedded world's judge; heads ("shape", "colour") for color, ("shape",) for geo."""
  from dreamfusion_jax.shapes import judge  # pylint: disable=g-import-not-at-top
  params = judge.load()
  return lambda images, prompts: judge.score_prompts(params, images, prompts, heads)


def judge_id(directory=None) -> str:
  """'judge:' and the first 12 hex digits of the judge weights' sha256: which judge saved scores are from."""
  from dreamfusion_jax.shapes import judge  # pylint: disable=g-import-not-at-top
  with open(os.path.join(directory or judge.JUDGE_DIR, "params.msgpack"), "rb") as f:
    return "judge:" + hashlib.sha256(f.read()).hexdigest()[:12]


def clip_scorer(model_dir: str) -> Scorer:
  """Cosine similarity of a real CLIP's image and text embeddings (transformers' FlaxCLIPModel)."""
  import transformers  # pylint: disable=g-import-not-at-top
  model = transformers.FlaxCLIPModel.from_pretrained(model_dir)
  tokenizer = transformers.CLIPTokenizer.from_pretrained(model_dir)
  size = model.config.vision_config.image_size

  def score(images, prompts):
    pixels = jax.image.resize(images, (images.shape[0], size, size, 3), method="bicubic")
    pixels = jnp.transpose((pixels - CLIP_MEAN) / CLIP_STD, (0, 3, 1, 2))  # CLIP is NCHW
    ids = tokenizer(list(prompts), padding="max_length", truncation=True, return_tensors="np")
    image_emb = model.get_image_features(pixel_values=pixels)
    text_emb = model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
    image_emb = image_emb / jnp.linalg.norm(image_emb, axis=-1, keepdims=True)
    text_emb = text_emb / jnp.linalg.norm(text_emb, axis=-1, keepdims=True)
    return image_emb @ text_emb.T

  return score
