"""The judge: a small CNN that names the shape and the colour in a render of the embedded world.

It replaces CLIP in R-precision for the embedded world (CLIP R-precision: Jain et al. 2022, used by
DreamFusion Sec. 4): "color" R-precision scores albedo renders with both heads, "geo" R-precision
scores textureless renders with the shape head only, since those carry no colour. Trained by
shapes/train_judge.py on the world's renders and shipped beside the prior in weights/judge/.
"""

import json
import os
from typing import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.shapes import captions

RESOLUTION = 32  # images are resized to this side before classification
JUDGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "judge")
HEADS = ("shape", "colour")


class Judge(nn.Module):
  """Conv net with a shape head and a colour head; input [B, H, W, 3] in [0, 1]."""
  widths: Sequence[int] = (32, 64, 128, 128)  # conv widths; every block after the first halves the size

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    x = 2.0 * images - 1.0
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3), strides=1 if i == 0 else 2)(x)
      x = nn.swish(nn.GroupNorm(num_groups=8)(x))
    # Mean and max pooling: the mean carries the colour, the max the presence of thin parts (legs).
    x = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    x = nn.swish(nn.Dense(128)(x))
    return {"shape": nn.Dense(len(captions.SHAPES))(x),
            "colour": nn.Dense(len(captions.COLOUR_NAMES))(x)}


def prepare(images: jax.Array) -> jax.Array:
  """Bilinear resize of [B, H, W, 3] renders to the judge's resolution."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
  b = images.shape[0]
  return jax.image.resize(images, (b, RESOLUTION, RESOLUTION, 3), method="bilinear")


def log_probs(params, images: jax.Array, model: Judge = Judge()) -> dict[str, jax.Array]:
  """{'shape': [B, 8], 'colour': [B, 8]} log-probabilities."""
  logits = model.apply({"params": params}, prepare(images))
  return {k: jax.nn.log_softmax(v.astype(jnp.float32)) for k, v in logits.items()}


def score_prompts(params, images: jax.Array, prompts: Sequence[str],
                  heads: Sequence[str] = HEADS) -> jax.Array:
  """[B, P] log p(prompt | image) under the chosen heads, for R-precision over `prompts`.

  A prompt "a {colour} {shape}" scores log p(shape) + log p(colour); a head not in `heads` (or a
  prompt without a colour) contributes nothing, so heads=("shape",) is the geometry-only score.
  """
  for head in heads:
    if head not in HEADS:
      raise ValueError(f"heads must be drawn from {HEADS}, got {head!r}")
  lp = log_probs(params, images)
  parsed = [captions.parse_prompt(p) for p in prompts]
  score = jnp.zeros((images.shape[0], len(prompts)))
  if "shape" in heads:
    score += lp["shape"][:, jnp.asarray([captions.SHAPES.index(s) for s, _ in parsed])]
  if "colour" in heads:
    has = np.asarray([c is not None for _, c in parsed])
    idx = jnp.asarray([captions.COLOUR_NAMES.index(c) if c else 0 for _, c in parsed])
    score += jnp.where(jnp.asarray(has), lp["colour"][:, idx], 0.0)
  return score


def r_precision(params, images: jax.Array, true_index: Sequence[int], prompts: Sequence[str],
                heads: Sequence[str] = HEADS) -> float:
  """Fraction of images whose true prompt (index into `prompts`) scores highest among all prompts."""
  best = jnp.argmax(score_prompts(params, images, prompts, heads), axis=-1)
  return float(jnp.mean(best == jnp.asarray(true_index)))


def scoring_view_accuracy(params, cameras, ambient: float = 0.1, diffuse: float = 0.9) -> dict:
  """Accuracy on the world's true objects through `cameras` on white, the renders R-precision scores.

  "textureless_shape": the shape head on every shape's textureless render (what "geo" scores);
  "albedo_shape" / "albedo_colour": each head on every shape x colour in albedo (what "color" scores).
  A judge that misses here would mark a perfect NeRF wrong, so this is its ceiling on the benchmark.
  """
  from dreamfusion_jax.nerf import shading  # pylint: disable=g-import-not-at-top
  from dreamfusion_jax.shapes import world  # pylint: disable=g-import-not-at-top
  n, num_colours = cameras.position.shape[0], len(captions.COLOUR_NAMES)
  predict = lambda images, head: np.asarray(jnp.argmax(log_probs(params, images)[head], axis=-1))
  # One render per shape and mode: in albedo every colour's scenes in one batch, cameras tiled colour-major.
  tiled = jax.tree_util.tree_map(lambda x: jnp.tile(x, (num_colours,) + (1,) * (x.ndim - 1)), cameras)
  colour = jnp.repeat(jnp.arange(num_colours, dtype=jnp.int32), n)

  render = lambda s, mode, colours, cams: world.render(world.white_scenes(s, colours, mode), cams, ambient,
                                                      diffuse, static_shape=s)[0]
  textureless, albedo_shape, albedo_colour = [], [], []
  for s in range(len(captions.SHAPES)):
    textureless.append(predict(render(s, shading.TEXTURELESS, jnp.zeros((n,), jnp.int32), cameras),
                               "shape") == s)
    albedo = render(s, shading.ALBEDO, colour, tiled)
    albedo_shape.append(predict(albedo, "shape") == s)
    albedo_colour.append(predict(albedo, "colour") == np.asarray(colour))
  return {"textureless_shape": float(np.mean(textureless)), "albedo_shape": float(np.mean(albedo_shape)),
          "albedo_colour": float(np.mean(albedo_colour))}


def save(directory: str, params, info: dict) -> None:
  """params in float16 (msgpack) + judge.json."""
  os.makedirs(directory, exist_ok=True)
  half = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float16), params)
  with open(os.path.join(directory, "params.msgpack"), "wb") as f:
    f.write(flax.serialization.msgpack_serialize(flax.core.unfreeze(half)))
  with open(os.path.join(directory, "judge.json"), "w") as f:
    json.dump(dict(info, shapes=captions.SHAPES, colours=captions.COLOUR_NAMES,
                   resolution=RESOLUTION), f, indent=2)


def load(directory: str = JUDGE_DIR):
  """float32 params of a saved judge; raises FileNotFoundError naming the training command."""
  path = os.path.join(directory, "params.msgpack")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no judge at {path}; run python -m dreamfusion_jax.shapes.train_judge")
  with open(os.path.join(directory, "judge.json")) as f:
    info = json.load(f)
  if tuple(info["shapes"]) != captions.SHAPES or tuple(info["colours"]) != captions.COLOUR_NAMES:
    raise ValueError(f"judge at {directory} was trained on other class names: {info['shapes']}, "
                     f"{info['colours']}")
  with open(path, "rb") as f:
    params = flax.serialization.msgpack_restore(f.read())
  return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
