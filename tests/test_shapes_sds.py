"""A short SDS run on the shipped prior raises the judge's belief in the prompt (the slow test)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest  # pylint: disable=unused-import

from dreamfusion_jax import distributed
from dreamfusion_jax import step as step_lib
from dreamfusion_jax.export import run as export_run
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.shapes import judge

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))
import shapes  # pylint: disable=g-import-not-at-top,wrong-import-position

# Measured on the text-only prior (the shipped one before the ensemble): log p of the prompt -15.9 at
# init and -1.4 after this 60-step run (seed 0); in 150-step runs, seeds 0 / 1: -2.0 / -2.1 at step 60,
# -0.9 / -0.7 at the end. 60 steps keep a wide margin over the +5 asserted.
STEPS = 60
PROMPT = "a red cube"

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(shapes.SHAPES_PRIOR, "unet")) or not os.path.isdir(judge.JUDGE_DIR)
    or not os.path.isdir(os.path.join(shapes.SHAPES_CAMERA_PRIOR, "unet")),
    reason="the shipped priors or judge weights are absent (python -m dreamfusion_jax.shapes.train_prior, "
           "launch/camera_prior.sh)")


def _judge_log_prob(judge_params, config, scene, params) -> float:
  """Mean over 4 views at 30 degrees of log p(shape) + log p(colour) of PROMPT for albedo renders."""
  render_fn, _ = export_run.make_render_fn(config, scene, params, jax.random.PRNGKey(0), 32)
  cams = camera.orbit(4, 32, elevation=30.0, distance=float(np.mean(config.camera.distance_range)))
  images = render_fn(cams, shading.ALBEDO).rgb
  return float(jnp.mean(judge.score_prompts(judge_params, images, [PROMPT])))


def test_sds_on_the_shipped_prior_raises_the_judges_score():
  config = shapes.get_config()
  config.prompt = PROMPT
  config.num_steps = STEPS
  prior, prior_params = stable_diffusion.load_from_config(config)
  text = text_lib.embed_prompts(prior, prior_params, PROMPT, config.negative_prompt, True,
                                config.prior.textureless_drop_words)  # as train.py embeds them
  mesh = distributed.make_mesh(jax.devices()[:1])
  scene = field.make_scene(config)
  optimizer = step_lib.make_optimizer(config)
  state = step_lib.init_state(config, scene, optimizer, mesh)
  judge_params = judge.load()
  before = _judge_log_prob(judge_params, config, scene, jax.device_get(state.params))
  frozen = distributed.replicate({"unet": prior_params["unet"]}, mesh)
  text = distributed.replicate(text, mesh)
  train_step = step_lib.make_train_step(config, scene, prior, optimizer, mesh)
  for _ in range(STEPS):
    state, metrics = train_step(state, frozen, text)
  assert bool(metrics["finite"])
  after = _judge_log_prob(judge_params, config, scene, jax.device_get(state.params))
  # log p is <= 0; the judge is sure the untrained grey blob is some other shape and colour (chance would
  # be log(1/8) per head, about -4.2 for both), and a few dozen SDS steps make "a red cube" its best guess.
  assert after > before + 5.0, (before, after)
