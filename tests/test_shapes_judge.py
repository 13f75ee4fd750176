"""The judge's scoring rules (R-precision over world prompts) and its float16 save/load round trip."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import judge as judge_lib
from dreamfusion_jax.shapes import train_judge


@pytest.fixture(scope="module")
def params():
  model = judge_lib.Judge()
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]


def _images(n=4, side=64):
  return jax.random.uniform(jax.random.PRNGKey(1), (n, side, side, 3))


def test_prompt_score_is_the_sum_of_head_log_probs(params):
  images = _images()
  lp = judge_lib.log_probs(params, images)
  prompts = ["a red cube", "an orange torus, side view", "a table"]
  score = np.asarray(judge_lib.score_prompts(params, images, prompts))
  s, c = captions.SHAPES.index, captions.COLOUR_NAMES.index
  np.testing.assert_allclose(score[:, 0], lp["shape"][:, s("cube")] + lp["colour"][:, c("red")], rtol=1e-5)
  np.testing.assert_allclose(score[:, 1], lp["shape"][:, s("torus")] + lp["colour"][:, c("orange")],
                             rtol=1e-5)
  np.testing.assert_allclose(score[:, 2], lp["shape"][:, s("table")], rtol=1e-5)  # no colour: shape only
  geo = np.asarray(judge_lib.score_prompts(params, images, prompts, heads=("shape",)))
  np.testing.assert_allclose(geo[:, 0], lp["shape"][:, s("cube")], rtol=1e-5)


def test_log_probs_normalise_and_r_precision_counts_argmax(params):
  images = _images()
  lp = judge_lib.log_probs(params, images)
  for head in judge_lib.HEADS:
    np.testing.assert_allclose(np.exp(lp[head]).sum(-1), 1.0, rtol=1e-5)
  prompts = captions.prompt_set()
  best = np.argmax(np.asarray(judge_lib.score_prompts(params, images, prompts)), axis=-1)
  truth = best.copy()
  truth[0] = (best[0] + 1) % len(prompts)  # one wrong out of four
  assert judge_lib.r_precision(params, images, truth, prompts) == pytest.approx(0.75)


def test_bad_inputs_raise(params):
  with pytest.raises(ValueError, match="heads"):
    judge_lib.score_prompts(params, _images(), ["a red cube"], heads=("texture",))
  with pytest.raises(ValueError, match="images"):
    judge_lib.log_probs(params, jnp.zeros((32, 32, 3)))


def test_save_load_round_trips_in_float16(params, tmp_path):
  judge_lib.save(str(tmp_path), params, {"steps": 0})
  loaded = judge_lib.load(str(tmp_path))
  for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b).astype(np.float16), rtol=0, atol=0)
  with pytest.raises(FileNotFoundError, match="train_judge"):
    judge_lib.load(os.path.join(str(tmp_path), "missing"))


def test_augment_keeps_pixels_in_range_and_preserves_flat_images():
  flat = jnp.full((8, 16, 16, 3), 0.5)
  out = train_judge.augment(jax.random.PRNGKey(2), flat)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  np.testing.assert_allclose(float(out.mean()), 0.5, atol=0.01)  # blur of a flat image is itself


@pytest.mark.skipif(not os.path.isfile(os.path.join(judge_lib.JUDGE_DIR, "params.msgpack")),
                    reason="no shipped judge in dreamfusion_jax/shapes/weights/judge yet (train_judge writes it)")
def test_shipped_judge_names_clean_renders():
  from configs import base as base_config  # pylint: disable=g-import-not-at-top
  from dreamfusion_jax.shapes import world  # pylint: disable=g-import-not-at-top
  params = judge_lib.load()
  batch = world.sample_batch(jax.random.PRNGKey(123), 64, base_config.get_config(), 32)
  lp = judge_lib.log_probs(params, batch.images)
  # Quality floors far above chance (1/8) and below the held-out accuracy judge.json records (0.84
  # shape, 0.99 colour): close-ups and overhead views make some shapes genuinely ambiguous.
  assert float(jnp.mean(jnp.argmax(lp["shape"], -1) == batch.scenes.shape)) > 0.65
  coloured = np.asarray(batch.scenes.mode) != 2  # textureless renders have no colour
  colour_ok = np.asarray(jnp.argmax(lp["colour"], -1) == batch.scenes.colour)
  assert colour_ok[coloured].mean() > 0.9


@pytest.mark.skipif(not os.path.isfile(os.path.join(judge_lib.JUDGE_DIR, "params.msgpack")),
                    reason="no shipped judge in dreamfusion_jax/shapes/weights/judge yet (train_judge writes it)")
def test_shipped_judge_names_the_true_objects_in_the_scored_views():
  """The benchmark's ceiling: a perfect NeRF, i.e. the world's own object, must be retrieved.

  The judge trained on the prior's backgrounds alone named a textureless sphere on white a torus and
  got 0.44 of the shapes right here; with white backgrounds in its training data, 1.00.
  """
  params = judge_lib.load()
  accuracy = judge_lib.scoring_view_accuracy(params, train_judge.scoring_cameras())
  assert min(accuracy.values()) >= 0.95, accuracy
  with open(os.path.join(judge_lib.JUDGE_DIR, "judge.json")) as f:
    recorded = json.load(f)["scoring_view_accuracy"]
  for key, value in accuracy.items():  # judge.json tells the truth about the shipped weights
    assert value == pytest.approx(recorded[key], abs=0.02), key
