"""evaluate's real-CLIP scorer (`--clip DIR`), on a tiny random FlaxCLIPModel saved the way CLIPs are."""

import json
import os

import jax
import numpy as np
import transformers

from dreamfusion_jax.evaluate import r_precision
from dreamfusion_jax.prior import clip_vocab


def _tiny_clip(folder: str) -> str:
  clip_vocab.write_clip_tokenizer(folder)
  with open(os.path.join(folder, "vocab.json")) as f:
    vocab_size = len(json.load(f))
  small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
  config = transformers.CLIPConfig(
      text_config=dict(vocab_size=vocab_size, max_position_embeddings=77, **small),
      vision_config=dict(image_size=32, patch_size=8, **small), projection_dim=16)
  transformers.FlaxCLIPModel(config, seed=0).save_pretrained(folder)
  return folder


def test_the_clip_scorer_gives_a_cosine_per_image_and_prompt(tmp_path):
  folder = _tiny_clip(str(tmp_path / "clip"))
  score = r_precision.clip_scorer(folder)
  images = jax.random.uniform(jax.random.PRNGKey(0), (3, 24, 24, 3))
  prompts = ["a red cube", "a blue torus", "a green sphere", "a red cube"]
  s = np.asarray(score(images, prompts))
  assert s.shape == (3, 4)
  assert np.abs(s).max() <= 1.0 + 1e-5 and np.ptp(s) > 0  # cosines of unit embeddings, not constant
  np.testing.assert_allclose(s[:, 0], s[:, 3], atol=1e-6)  # a column per prompt
  # a row per image and a column per prompt, whatever their order
  np.testing.assert_allclose(np.asarray(score(images[::-1], prompts[::-1])), s[::-1, ::-1], atol=1e-5)
