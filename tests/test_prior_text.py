"""View-dependent prompts: the prompt strings, their embeddings and the per-view selection."""

import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import text

FRONT, SIDE, BACK, OVERHEAD = 0, 1, 2, 3


def test_view_prompts():
  assert text.view_prompts("a corgi") == [
      "a corgi, front view", "a corgi, side view", "a corgi, back view", "a corgi, overhead view"]
  assert text.view_prompts("a corgi", view_dependent=False) == ["a corgi"] * 4
  with pytest.raises(ValueError, match="config.prompt"):
    text.view_prompts("  ")


def test_embeddings_are_the_encoded_view_prompts():
  prior, params = random_init.build_random_prior("tiny-pixel")
  emb = text.embed_prompts(prior, params, "a red cube", negative_prompt="blurry")
  want = prior.encode_text(params, text.view_prompts("a red cube") + ["blurry"])
  np.testing.assert_allclose(emb.cond, want[:4], atol=1e-6)
  np.testing.assert_allclose(emb.uncond, want[4], atol=1e-6)
  assert float(jnp.abs(emb.cond[FRONT] - emb.cond[BACK]).max()) > 0  # the suffix changes the embedding
  plain = text.embed_prompts(prior, params, "a red cube", view_dependent=False)
  single = prior.encode_text(params, ["a red cube"])
  np.testing.assert_allclose(plain.cond, jnp.repeat(single, 4, 0), atol=1e-6)


def _emb():
  """Rows whose values are their view label, so selections can be read off."""
  cond = jnp.broadcast_to(jnp.arange(4.0)[:, None, None], (4, 3, 2))
  return text.TextEmbeddings(cond=cond, uncond=jnp.full((3, 2), -1.0))


def test_select_picks_rows_by_label():
  view = jnp.array([BACK, FRONT, OVERHEAD])
  cond, uncond = text.select(_emb(), view, jnp.array([180.0, 0.0, 45.0]))
  np.testing.assert_array_equal(cond[:, 0, 0], [BACK, FRONT, OVERHEAD])
  assert uncond.shape == cond.shape == (3, 3, 2) and float(uncond.max()) == -1.0


def test_select_interpolates_by_azimuth_but_not_overhead():
  azimuth = jnp.array([0.0, 45.0, 90.0, 135.0, 180.0, 270.0, 315.0, 30.0])
  view = jnp.array([FRONT, FRONT, SIDE, SIDE, BACK, SIDE, FRONT, OVERHEAD])
  cond, _ = text.select(_emb(), view, azimuth, interpolate=True)
  # front=0, side=1, back=2: the blend is linear in azimuth, both sides share "side".
  np.testing.assert_allclose(cond[:, 0, 0], [0.0, 0.5, 1.0, 1.5, 2.0, 1.0, 0.5, OVERHEAD], atol=1e-6)


def test_drop_words():
  assert text.drop_words("a Red cube", ("red", "blue")) == "a cube"
  assert text.drop_words("a red, shiny cube", ("red",)) == "a shiny cube"
  assert text.drop_words("a reddish cube", ("red",)) == "a reddish cube"  # whole words only
  assert text.drop_words("an orange cone", ("orange",)) == "a cone"  # the article follows the new word
  assert text.drop_words("A red apple", ("red",)) == "An apple"
  assert text.drop_words("an egg", ("red",)) == "an egg"
  assert text.drop_words("a  red cube", ()) == "a  red cube"  # nothing to drop: untouched
  with pytest.raises(ValueError, match="textureless_drop_words"):
    text.drop_words("red", ("red",))


def test_textureless_views_get_the_prompt_without_the_dropped_words():
  prior, params = random_init.build_random_prior("tiny-pixel")
  emb = text.embed_prompts(prior, params, "a red cube", textureless_drop_words=("red", "blue"))
  want = prior.encode_text(params, text.view_prompts("a cube"))
  np.testing.assert_allclose(emb.textureless, want, atol=1e-6)
  np.testing.assert_allclose(emb.cond, prior.encode_text(params, text.view_prompts("a red cube")),
                             atol=1e-6)
  # No word to drop: no second table, textureless views share the prompt.
  assert text.embed_prompts(prior, params, "a cube", textureless_drop_words=("red",)).textureless is None
  # Selection: textureless views take the colourless rows, the others keep the prompt's.
  view = jnp.array([FRONT, SIDE, SIDE])
  cond, _ = text.select(emb, view, jnp.zeros(3), textureless=jnp.array([False, True, False]))
  np.testing.assert_allclose(cond[0], emb.cond[FRONT])
  np.testing.assert_allclose(cond[1], emb.textureless[SIDE])
  np.testing.assert_allclose(cond[2], emb.cond[SIDE])
  assert float(jnp.abs(emb.textureless[SIDE] - emb.cond[SIDE]).max()) > 0
