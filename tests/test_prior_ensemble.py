"""An ensemble of priors (config.prior.ensemble): the mean of its members' predictions, a prior with itself
equal to that prior, each view's camera handed to the camera-conditioned members only, the SDS
gradient the mean of the members' gradients, and bad members refused before any weights are read."""

import dataclasses
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from configs import shapes as shapes_config
from dreamfusion_jax import config_files
from dreamfusion_jax import workdir as workdir_lib
from dreamfusion_jax.distill import sds as sds_lib
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.prior import ensemble
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import prior_model

PROMPTS = ["a red cube", "a blue torus, side view", ""]


def _save(root, name, tok_dir, seed, camera_dim=0, channels=(32, 32)):
  _, spec, _, _, params = helpers.tiny_prior(tok_dir, seed=seed, channels=channels)
  if camera_dim:
    spec = spec.replace(camera_dim=camera_dim)
    unet = prior_model.add_camera_input(jax.random.PRNGKey(seed + 10), spec, params["unet"])
    params = dict(params, unet=helpers.learned_camera_layer(unet, seed=seed + 20))
  out = str(root / name)
  prior_model.save_diffusers(out, spec, params, tok_dir, {"step": 0}, dtype=jnp.float32)
  return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """Two tiny text-only shapes priors of different weights and a camera-conditioned one (64 channels:
  with 32, diffusers' one-channel GroupNorms would remove the camera again), in the diffusers layout."""
  root = tmp_path_factory.mktemp("ensemble")
  tok_dir = str(root / "tok")
  return dict(a=_save(root, "a", tok_dir, 0), b=_save(root, "b", tok_dir, 1),
              cam=_save(root, "cam", tok_dir, 2, camera_dim=8, channels=(64, 64)), root=root)


def _config(model, *others):
  config = config_files.load()
  with config.unlocked():
    config.prior.model, config.prior.ensemble = model, tuple(others)
    config.prior.dtype, config.prior.local_files_only = "float32", True
  return config


def _inputs(n=3):
  x = jax.random.normal(jax.random.PRNGKey(2), (n, 32, 32, 3))
  t = jnp.asarray([20, 500, 950][:n])
  cams = camera_lib.sample_views(jax.random.PRNGKey(3), n, shapes_config.get_config())
  return x, t, camera_lib.conditioning(cams)


def _alone(folder):
  return stable_diffusion.load_prior(folder, "float32", local_files_only=True)


def test_ensemble_predicts_the_mean_of_its_members(folders):
  prior, params = stable_diffusion.load_from_config(_config(folders["a"], folders["b"]))
  assert isinstance(prior, ensemble.PriorEnsemble) and prior.kind == "pixel"
  x, t, _ = _inputs()
  got = prior.predict_noise(params, x, t, prior.encode_text(params, PROMPTS))
  each = []
  for folder in (folders["a"], folders["b"]):
    member, member_params = _alone(folder)
    each.append(member.predict_noise(member_params, x, t, member.encode_text(member_params, PROMPTS)))
  assert float(jnp.max(jnp.abs(each[0] - each[1]))) > 1e-2  # two different priors
  np.testing.assert_allclose(np.asarray(got), np.asarray((each[0] + each[1]) / 2), atol=1e-5)


def test_a_prior_with_itself_is_that_prior(folders):
  prior, params = stable_diffusion.load_from_config(_config(folders["a"], folders["a"]))
  single, single_params = _alone(folders["a"])
  x, t, _ = _inputs()
  emb, single_emb = prior.encode_text(params, PROMPTS), single.encode_text(single_params, PROMPTS)
  assert emb.shape[-1] == 2 * single_emb.shape[-1]  # each member's own text, side by side
  cond, uncond = emb[:2], jnp.broadcast_to(emb[2:], emb[:2].shape)
  got = prior.guided_noise(params, x[:2], t[:2], cond, uncond, 10.0)
  want = single.guided_noise(single_params, x[:2], t[:2], single_emb[:2],
                             jnp.broadcast_to(single_emb[2:], single_emb[:2].shape), 10.0)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_sds_gradient_is_the_members_mean_and_only_camera_members_see_the_camera(folders):
  """SDS is linear in ε̂, so the ensemble's gradient is the mean of its members' for the same (t, ε):
  the text-only member's without the camera, the camera-conditioned member's with it."""
  prior, params = stable_diffusion.load_from_config(_config(folders["a"], folders["cam"]))
  assert prior.camera_conditioned
  x, t, camera = _inputs(2)
  eps = jax.random.normal(jax.random.PRNGKey(4), x.shape)

  def grad(p, q, cam):
    emb = p.encode_text(q, PROMPTS)
    return sds_lib.sds_gradient(p, q, x, emb[:2], jnp.broadcast_to(emb[2:], emb[:2].shape), t, eps, 10.0,
                                camera=cam)

  text_member, cam_member = _alone(folders["a"]), _alone(folders["cam"])
  want = (grad(*text_member, None) + grad(*cam_member, camera)) / 2
  np.testing.assert_allclose(np.asarray(grad(prior, params, camera)), np.asarray(want), atol=1e-5)
  other = grad(prior, params, camera[::-1])
  assert float(jnp.max(jnp.abs(other - want))) > 1e-3  # the camera reaches the camera member
  with pytest.raises(ValueError, match="camera-conditioned"):
    grad(prior, params, None)


def test_members_must_share_the_schedule_and_the_model_space(folders):
  a, _ = _alone(folders["a"])
  other_schedule = dataclasses.replace(a, alphas_cumprod=a.alphas_cumprod ** 1.1)
  with pytest.raises(ValueError, match="noise schedule"):
    ensemble.PriorEnsemble((a, other_schedule))
  with pytest.raises(ValueError, match="sample_size=16"):
    ensemble.PriorEnsemble((a, dataclasses.replace(a, sample_size=16)))
  with pytest.raises(ValueError, match="at least two"):
    ensemble.PriorEnsemble((a,))


def test_a_missing_member_is_named_before_any_weights_are_read(folders, monkeypatch):
  def no_loading(*args):
    raise AssertionError(f"weights read before every folder was checked: {args[1]}")
  monkeypatch.setattr(stable_diffusion, "load_found", no_loading)
  missing = str(folders["root"] / "no_such_prior")
  with pytest.raises(stable_diffusion.PriorNotFoundError, match=r"config\.prior\.ensemble\[1\]"):
    stable_diffusion.load_from_config(_config(folders["a"], folders["b"], missing))


def test_a_run_resumes_only_with_the_same_members(folders, tmp_path):
  """prior.ensemble fixes what a run trains against: another member is refused, the same files under
  another path are not."""
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  workdir_lib.save_config(workdir, _config(folders["a"], folders["b"]))
  with pytest.raises(workdir_lib.WorkdirError, match="prior.ensemble"):
    workdir_lib.check_config_compatible(workdir, _config(folders["a"], folders["cam"]))
  copy = str(tmp_path / "b_copy")
  shutil.copytree(folders["b"], copy)
  workdir_lib.check_config_compatible(workdir, _config(folders["a"], copy))
  old = workdir_lib.load_config(workdir)
  del old["prior"]["ensemble"]  # a run saved before the field existed trained on prior.model alone
  assert workdir_lib.config_differences(old, workdir_lib.config_dict(_config(folders["a"]))) == []
