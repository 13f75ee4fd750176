"""Config validation: every bad value is named with what is allowed, before any work."""

import os
import sys

import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax import config_check
from dreamfusion_jax import config_files

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import base  # pylint: disable=g-import-not-at-top,wrong-import-position
import shapes  # pylint: disable=g-import-not-at-top,wrong-import-position
import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position


def _config(**overrides):
  c = base.get_config()
  c.prompt = "a red cube"
  return helpers.override(c, **overrides)


def test_base_and_tiny_configs_are_valid():
  assert config_check.problems(_config()) == []
  c = tiny.get_config()
  c.prompt = "a red cube"
  c.prior.model = "/some/folder"
  assert config_check.problems(c) == []
  c = shapes.get_config()
  c.prompt = "a red cube"
  assert config_check.problems(c) == []


def test_config_files_load_by_path_and_refuse_a_missing_file_by_name(tmp_path):
  loaded = config_files.load(config_files.SHAPES)
  assert loaded.to_dict() == shapes.get_config().to_dict()
  assert os.path.isdir(loaded.prior.model)  # the shipped weights, found from any working directory
  assert config_files.load().nerf.bound == base.get_config().nerf.bound != loaded.nerf.bound
  missing = str(tmp_path / "nope.py")
  with pytest.raises(ValueError, match=f"--config={missing}: no such config file"):
    config_files.load(missing)


def test_configs_are_locked():
  c = base.get_config()
  with pytest.raises(AttributeError):
    c.nerf.widht = 3  # a typo must not silently create a field


@pytest.mark.parametrize("overrides, fragment", [
    ({"prompt": "  "}, "config.prompt is empty"),
    ({"distill": "dds"}, "config.distill = 'dds': must be one of sds, sjc, ism"),
    ({"nerf__background": "black"}, "config.nerf.background = 'black': must be one of mlp, solid, random"),
    ({"nerf__density_activation": "relu"}, "config.nerf.density_activation"),
    ({"prior__dtype": "float16"}, "config.prior.dtype = 'float16': must be one of float32, bfloat16"),
    ({"render__resolution": -64}, "config.render.resolution = -64: must be a positive integer"),
    ({"batch_per_device": 0}, "config.batch_per_device = 0"),
    ({"camera__elevation_range": (90.0, -10.0)}, "config.camera.elevation_range = (90.0, -10.0)"),
    ({"camera__late_elevation_range": (45.0, -10.0)}, "config.camera.late_elevation_range = (45.0, -10.0)"),
    ({"camera__late_elevation_step": -1}, "config.camera.late_elevation_step = -1: must be >= 0"),
    ({"sds__t_min": 0.9, "sds__t_max": 0.5}, "config.sds.t_min = 0.9 is above config.sds.t_max = 0.5"),
    ({"shading__shaded_prob": 1.5}, "config.shading.shaded_prob = 1.5: must be in [0, 1]"),
    ({"reg__opacity": -1.0}, "config.reg.opacity = -1.0: must be >= 0"),
    ({"reg__coverage_max": 1.2}, "config.reg.coverage_max = 1.2: must be in [0, 1]"),
    ({"nerf__background_saturation": -0.5}, "config.nerf.background_saturation = -0.5: must be in [0, 1]"),
    ({"export__formats": ("mp4", "usdz")}, "config.export.formats has ['usdz']"),
    ({"nerf__encoding": "hashgrid", "nerf__coarse_to_fine_steps": 100},
     "config.nerf.coarse_to_fine_steps = 100 works through IPE's damping"),
    ({"nerf__coarse_to_fine_start": -1.0}, "config.nerf.coarse_to_fine_start = -1.0: must be >= 0"),
    ({"prior__camera_zoom": 0.0}, "config.prior.camera_zoom = 0.0: must be > 0"),
    ({"prior__ensemble": ("runs/b", " ")}, "config.prior.ensemble = ('runs/b', ' '): must be a tuple of"),
    ({"optim__ema_decay": 1.0}, "config.optim.ema_decay = 1.0: must be in [0, 1)"),
    ({"sds__denoise_weight": 1.5}, "config.sds.denoise_weight = 1.5: must be in [0, 1]"),
    ({"sds__denoise_weight": 0.5, "sds__threshold": "static"},
     "config.sds.denoise_weight = 0.5 with config.sds.threshold = 'static'"),
    ({"num_steps": 100, "nerf__coarse_to_fine_steps": 101},
     "config.nerf.coarse_to_fine_steps = 101 is above config.num_steps = 100"),
    ({"prior__textureless_drop_words": ("red", " ")}, "config.prior.textureless_drop_words = ('red', ' ')"),
    ({"prior__textureless_drop_words": ("a", "red", "cube")}, "removes every word of the prompt 'a red cube'"),
])
def test_bad_values_are_named(overrides, fragment):
  with pytest.raises(config_check.ConfigError) as err:
    config_check.check(_config(**overrides))
  assert fragment in str(err.value)


def test_all_problems_reported_at_once():
  found = config_check.problems(_config(distill="x", render__resolution=0, prompt=""))
  assert len(found) == 3
