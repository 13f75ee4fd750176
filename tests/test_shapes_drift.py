"""SDS started at the true object (shapes.drift): the fit reaches the truth, and a step that moves nothing
keeps it there at every checkpoint."""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import pytest

from configs import shapes as shapes_config
from dreamfusion_jax import config_files
from dreamfusion_jax.evaluate import geometry
from dreamfusion_jax.nerf import field
from dreamfusion_jax.prior import testing
from dreamfusion_jax.shapes import drift


@dataclasses.dataclass(frozen=True, eq=False)
class PixelGaussianPrior(testing.GaussianPrior):
  """GaussianPrior that also encodes text and images, as the training step asks of a pixel prior."""
  image_size: int = 16
  sample_size: int = 16

  def encode_text(self, params, prompts):
    del params
    return jnp.zeros((len(prompts), 2, 4), jnp.float32)

  def encode_image(self, params, rgb):
    del params
    return 2.0 * rgb - 1.0


def _small_config(num_steps):
  config = shapes_config.get_config()
  config.render.resolution = 16
  config.num_steps = num_steps
  return config


def test_a_step_that_moves_nothing_keeps_the_fitted_truth():
  """Guidance 0 and denoise weight 0 make the SDS gradient exactly 0, and with every regularizer at 0
  Adam's update is 0: the run started at the fitted object must score the fit's IoU at every checkpoint.
  The fit itself must reach the true sphere far beyond the untrained field."""
  config = _small_config(num_steps=6)
  config.sds.guidance_scale = 0.0
  config.sds.denoise_weight = 0.0
  for name in ("opacity", "coverage", "orientation", "orientation_start", "distortion", "entropy"):
    config.reg[name] = 0.0
  config.prompt = prompt = "a red sphere"
  scene = field.make_scene(config)
  bound = float(config.nerf.bound)
  score = lambda p: drift.true_shape_iou(scene, p, prompt, bound, 32)
  untrained = score(field.init_params(scene, jax.random.PRNGKey(0)))
  params = drift.fit_to_truth(config, scene, prompt, 60, jax.random.PRNGKey(0))
  trace = drift.drift(config, PixelGaussianPrior(), {}, scene, params, every=3, score=score)
  assert [s for s, _ in trace] == [0, 3, 6]
  fitted = trace[0][1]
  assert fitted > 0.75 and fitted > untrained + 0.3, (fitted, untrained)
  assert all(iou == fitted for _, iou in trace), trace


def test_the_guided_step_moves_the_fitted_truth():
  """The same run with the Gaussian prior's guidance on (CFG 10, its mean image a flat grey) changes the
  field: the trace is not the identity the null step gives."""
  config = _small_config(num_steps=6)
  config.prompt = prompt = "a red sphere"
  scene = field.make_scene(config)
  score = lambda p: drift.true_shape_iou(scene, p, prompt, float(config.nerf.bound), 32)
  params = drift.fit_to_truth(config, scene, prompt, 60, jax.random.PRNGKey(0))
  trace = drift.drift(config, PixelGaussianPrior(), {}, scene, params, every=6, score=score)
  assert trace[1][1] != trace[0][1], trace


def test_overrides_and_bad_arguments(monkeypatch, capsys):
  config = shapes_config.get_config()
  config_files.apply_overrides(config, ["sds.t_max=0.3", "num_steps=300", "sds.weighting=uniform"])
  assert (config.sds.t_max, config.num_steps, config.sds.weighting) == (0.3, 300, "uniform")
  with pytest.raises(ValueError, match="sds.t_maximum"):
    config_files.apply_overrides(config, ["sds.t_maximum=0.3"])
  with pytest.raises(ValueError, match="FIELD=VALUE"):
    config_files.apply_overrides(config, ["sds.t_max"])
  for argv, named in ((["--prompts", "a red dodecahedron"], "dodecahedron"),
                      (["--set", "sds.t_max=1.5"], "sds.t_max"),
                      (["--set", "nerf.widht=3"], "nerf.widht"),
                      (["--every", "0"], "--every")):
    monkeypatch.setattr(sys, "argv", ["drift", "--weights", "/nonexistent"] + argv)
    with pytest.raises(SystemExit):
      drift.main()
    assert named in capsys.readouterr().err


def test_missing_weights_are_named(monkeypatch, tmp_path, capsys):
  monkeypatch.setattr(sys, "argv", ["drift", "--prompts", "a red cube", "--weights", str(tmp_path)])
  with pytest.raises(SystemExit):
    drift.main()
  err = capsys.readouterr().err
  assert "--weights" in err and str(tmp_path) in err, err
