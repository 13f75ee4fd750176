"""A camera-conditioned pixel prior: the camera inputs' closed forms, a camera input added to a text-only
prior that starts at zero, the same forward in training and through the loader, and the distillation
step handing each view's camera to the prior."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from configs import shapes as shapes_config
from dreamfusion_jax.distill import sds as sds_lib
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import prior_model
from dreamfusion_jax.shapes import tokenizer as tokenizer_lib
from dreamfusion_jax.shapes import train_prior

CAMERA_DIM = 8


def test_conditioning_of_an_orbit_is_its_elevation_and_size_with_the_origin_at_the_centre():
  cams = camera_lib.orbit(5, 32, elevation=25.0, distance=1.6, focal_scale=1.2)
  got = np.asarray(camera_lib.conditioning(cams, zoom=1.5))
  np.testing.assert_allclose(got[:, 0], 25.0)
  np.testing.assert_allclose(got[:, 1], 100.0 * 1.2 / 1.5 / 1.6, rtol=1e-5)
  np.testing.assert_allclose(got[:, 2:], 0.0, atol=1e-4)


def test_conditioning_places_the_origin_where_a_turned_camera_sees_it():
  """A camera at (0, 0, d) turned to look at (a, b, 0) sees the origin at angles atan(a/d), atan(b/d) off
  its axis, on the other side: u = -f a / d, v = -f b / d for a pure pan (b = 0) and tilt (a = 0)."""
  d, f, res = 2.0, 0.9, 16
  for target, axis in (((0.3, 0.0, 0.0), 2), ((0.0, -0.4, 0.0), 3)):
    position = jnp.asarray([[0.0, 0.0, d]])
    rotation = camera_lib.look_at(position, jnp.asarray([target]), jnp.asarray([[0.0, 1.0, 0.0]]))
    cams = camera_lib.Cameras(position=position, rotation=rotation, focal=jnp.asarray([f * res]),
                              light_position=position, elevation=jnp.zeros(1), azimuth=jnp.zeros(1),
                              view=jnp.zeros(1, jnp.int32), resolution=res)
    got = np.asarray(camera_lib.conditioning(cams))[0]
    offset = target[axis - 2]
    # The origin's angle off the axis: atan(offset / d) (the target's) — its tangent in the tilted frame.
    np.testing.assert_allclose(got[axis], -100.0 * f * offset / d, rtol=1e-4)
    np.testing.assert_allclose(got[5 - axis], 0.0, atol=1e-4)
    np.testing.assert_allclose(got[1], 100.0 * f / d, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A tiny text-only prior saved in the diffusers layout, the same UNet with a camera input added, and
  that camera prior saved and loaded back by the project's loader."""
  root = tmp_path_factory.mktemp("camera_prior")
  tok_dir = str(root / "tok")
  # 64 channels: with 32 (diffusers' 32 norm groups of one channel each) every GroupNorm after the
  # timestep embedding is added removes it again, so neither t nor the camera would change the output.
  tok, spec, text, unet, params = helpers.tiny_prior(tok_dir, channels=(64, 64))
  cam_spec = spec.replace(camera_dim=CAMERA_DIM)
  _, cam_unet = prior_model.build(cam_spec)
  cam_unet_params = prior_model.add_camera_input(jax.random.PRNGKey(1), cam_spec, params["unet"])
  cam_params = dict(params, unet=cam_unet_params)
  out = str(root / "camera_weights")
  prior_model.save_diffusers(out, cam_spec, cam_params, tok_dir, {"step": 0}, dtype=jnp.float32)
  prior, loaded = stable_diffusion.load_prior(out, "float32", local_files_only=True)
  return dict(spec=spec, cam_spec=cam_spec, text=text, unet=unet, cam_unet=cam_unet, params=params,
              cam_params=cam_params, tok=tok, tok_dir=tok_dir, prior=prior, loaded=loaded, root=root)


def _learned(loaded):
  """The loaded camera prior's params with a standard-normal last camera layer: one that has learned
  something, so the camera changes the predictions."""
  return dict(loaded, unet=helpers.learned_camera_layer(loaded["unet"], seed=5))


def _inputs(tiny, n=3):
  ids = jnp.asarray(tokenizer_lib.encode(tiny["tok"], ["a red cube", "a blue torus, side view", ""][:n]))
  context = prior_model.encode_text(tiny["text"], tiny["params"]["text"], ids)
  x = jax.random.normal(jax.random.PRNGKey(2), (n, 32, 32, 3))
  t = jnp.asarray([20, 500, 950][:n])
  cams = camera_lib.sample_views(jax.random.PRNGKey(3), n, shapes_config.get_config())
  return x, t, context, camera_lib.conditioning(cams)


def test_an_added_camera_input_starts_at_zero_and_learns(tiny):
  """Added to a text-only UNet, the camera input changes no prediction (its last layer is zero), yet the
  loss has a gradient through that layer, so training moves it."""
  x, t, context, camera = _inputs(tiny)
  text_only = prior_model.predict_noise(tiny["unet"], tiny["params"]["unet"], x, t, context)
  for cam in (camera, camera[::-1] + 7.0):
    with_camera = prior_model.predict_noise(tiny["cam_unet"], tiny["cam_params"]["unet"], x, t, context, cam)
    np.testing.assert_array_equal(np.asarray(with_camera), np.asarray(text_only))
  loss = lambda p: jnp.mean(prior_model.predict_noise(tiny["cam_unet"], p, x, t, context, camera)**2)
  grad = jax.grad(loss)(tiny["cam_params"]["unet"])["add_embedding"]["linear_2"]["kernel"]
  assert float(jnp.max(jnp.abs(grad))) > 0.0


def test_camera_prior_loads_as_such_and_predicts_as_in_training(tiny):
  prior, loaded = tiny["prior"], tiny["loaded"]
  assert prior.camera_conditioned and prior.kind == "pixel"
  x, t, context, camera = _inputs(tiny)
  params = _learned(loaded)  # a non-zero camera layer, so the camera matters in the comparison
  unet = params["unet"]
  ours = prior_model.predict_noise(tiny["cam_unet"], unet, x, t, context, camera)
  theirs = prior.predict_noise(params, x, t, context, camera)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4)
  other = prior.predict_noise(params, x, t, context, camera[::-1])
  assert float(jnp.max(jnp.abs(other - theirs))) > 1e-3  # the camera is an input
  with pytest.raises(ValueError, match="camera-conditioned"):
    prior.predict_noise(params, x, t, context)
  with pytest.raises(ValueError, match="camera-conditioned"):
    prior_model.predict_noise(tiny["cam_unet"], unet, x, t, context)


def test_text_only_prior_refuses_a_camera(tiny):
  x, t, context, camera = _inputs(tiny)
  text_only = dataclasses.replace(tiny["prior"], unet=tiny["unet"])
  assert not text_only.camera_conditioned
  with pytest.raises(ValueError, match="text-only"):
    text_only.predict_noise({"unet": tiny["params"]["unet"]}, x, t, context, camera)


def test_sds_hands_each_view_its_camera(tiny):
  """sds_gradient with cameras equals w(t)(ε̂_ω − ε) from the guided prediction with those cameras."""
  prior, loaded = tiny["prior"], tiny["loaded"]
  params = _learned(loaded)
  x, t, context, camera = _inputs(tiny, 2)
  uncond = jnp.broadcast_to(context[-1:], context.shape)
  eps = jax.random.normal(jax.random.PRNGKey(4), x.shape)
  g = sds_lib.sds_gradient(prior, params, x, context, uncond, t, eps, 10.0, camera=camera)
  ab = jnp.asarray(prior.alphas_cumprod, jnp.float32)[t][:, None, None, None]
  x_t = jnp.sqrt(ab) * x + jnp.sqrt(1 - ab) * eps
  eps_c = prior.predict_noise(params, x_t, t, context, camera)
  eps_u = prior.predict_noise(params, x_t, t, uncond, camera)
  want = (1 - ab) * (eps_u + 10.0 * (eps_c - eps_u) - eps)
  np.testing.assert_allclose(np.asarray(g), np.asarray(want), atol=1e-4)
  swapped = sds_lib.sds_gradient(prior, params, x, context, uncond, t, eps, 10.0, camera=camera[::-1])
  assert float(jnp.max(jnp.abs(swapped - g))) > 1e-3


def test_warm_start_adds_the_camera_input_to_text_only_weights(tiny, tmp_path):
  """--init-from-weights of a text-only prior with --camera-dim: the same params plus a zero camera layer."""
  spec_overrides = dict(channels=tiny["spec"].channels, text_width=tiny["spec"].text_width,
                        text_layers=tiny["spec"].text_layers)
  weights = helpers.save_export(str(tmp_path / "weights"), tiny["spec"], tiny["params"], tiny["tok_dir"],
                                spec_overrides, step=3)
  params, _ = train_prior.warm_start_from_weights(weights, str(tmp_path / "run"),
                                                  dict(spec_overrides, camera_dim=CAMERA_DIM))
  assert set(params["unet"]) == set(tiny["params"]["unet"]) | {"add_embedding"}
  for leaf in jax.tree_util.tree_leaves(params["unet"]["add_embedding"]["linear_2"]):
    np.testing.assert_array_equal(np.asarray(leaf), 0.0)
  x, t, context, camera = _inputs(tiny)
  np.testing.assert_array_equal(
      np.asarray(prior_model.predict_noise(tiny["cam_unet"], params["unet"], x, t, context, camera)),
      np.asarray(prior_model.predict_noise(tiny["unet"], tiny["params"]["unet"], x, t, context)))
  with pytest.raises(ValueError, match="camera-dim"):  # a camera prior is not continued as text-only
    cam_weights = helpers.save_export(str(tmp_path / "cam_weights"), tiny["cam_spec"], tiny["cam_params"],
                                      tiny["tok_dir"], dict(spec_overrides, camera_dim=CAMERA_DIM))
    train_prior.warm_start_from_weights(cam_weights, str(tmp_path / "run2"), spec_overrides)


def test_train_step_feeds_the_batch_camera_and_scales_the_camera_layers_learning_rate(tiny):
  """One training step of the camera prior: camera_lr_scale multiplies the camera layers' update alone
  (0 leaves them, 2 doubles their step, the rest of the UNet steps as before), and they move: the zero
  last layer's gradient is the camera embedding's activation, so the batch's camera reaches the UNet."""
  params = tiny["cam_params"]
  one_step = lambda scale: helpers.params_after_two_steps(tiny["text"], tiny["cam_unet"], params,
                                                          tiny["tok"], scale)

  moved = lambda p, part: jax.tree_util.tree_map(lambda a, b: np.asarray(a) - np.asarray(b),
                                                 p["unet"][part], params["unet"][part])
  one, zero, two = one_step(1.0), one_step(0.0), one_step(2.0)
  step1 = jax.tree_util.tree_leaves(moved(one, "add_embedding"))
  assert max(float(np.max(np.abs(s))) for s in step1) > 1e-5
  for s0, s1, s2 in zip(jax.tree_util.tree_leaves(moved(zero, "add_embedding")), step1,
                        jax.tree_util.tree_leaves(moved(two, "add_embedding"))):
    np.testing.assert_array_equal(s0, 0.0)
    np.testing.assert_allclose(s2, 2.0 * s1, atol=1e-7)
  others = lambda p: jax.tree_util.tree_leaves(moved(p, "conv_in"))  # the rest of the UNet: one rate
  for s1, s2 in zip(others(one), others(two)):
    np.testing.assert_array_equal(s1, s2)


def test_the_train_step_compiles_once_from_loaded_weights(tiny):
  """Weights committed to a device beside a fresh, uncommitted step counter (as diffusers' loader left
  them before load_prior uncommitted them), and the step's outputs all committed: train() commits the
  whole state first (on_one_device), so the second step reuses the first one's compilation."""
  from configs import base as base_config  # pylint: disable=g-import-not-at-top
  loaded = jax.device_put(tiny["cam_params"], jax.local_devices()[0])  # committed
  optimizer = train_prior.make_optimizer(1e-3, 1)
  state = train_prior.on_one_device(train_prior.TrainState(
      step=jnp.zeros((), jnp.int32), params=loaded, ema=jax.tree_util.tree_map(jnp.copy, loaded),
      opt_state=optimizer.init(loaded)))
  assert all(leaf.committed for leaf in jax.tree_util.tree_leaves(state))
  step_fn = train_prior.make_train_step(tiny["text"], tiny["cam_unet"], optimizer, base_config.get_config(), 8)
  if not hasattr(step_fn, "_cache_size"):
    pytest.skip("this jax's jitted functions do not report their cache size")
  table = jnp.asarray(tokenizer_lib.encode(tiny["tok"], captions.caption_table()))
  for _ in range(2):
    state, _ = step_fn(state, jax.random.PRNGKey(0), table)
  assert step_fn._cache_size() == 1  # pylint: disable=protected-access


def test_camera_learning_rate_phases_are_recorded_with_the_step_they_changed_at():
  assert "camera_lr_phases" not in train_prior.record_camera_lr_scale({"step": 0}, 1.0, 0)
  fast = train_prior.record_camera_lr_scale({"step": 943}, 10.0, 943)  # a run resumed with 10x
  assert fast["camera_lr_phases"] == [{"from_step": 943, "camera_lr_scale": 10.0}]
  assert train_prior.record_camera_lr_scale(fast, 10.0, 2000) == fast  # resumed again, unchanged
  back = train_prior.record_camera_lr_scale(fast, 1.0, 2000)
  assert back["camera_lr_phases"][-1] == {"from_step": 2000, "camera_lr_scale": 1.0}
  assert train_prior.record_camera_lr_scale(fast, 10.0, 0)["camera_lr_phases"] == [
      {"from_step": 0, "camera_lr_scale": 10.0}]  # a fresh run starts its own record


def test_ddim_samples_of_a_camera_prior_added_at_zero_are_the_text_only_priors(tiny):
  """sample.ddim_sample hands a camera-conditioned prior its SAMPLE_CAMERA; with the camera layer still at
  zero the samples are exactly those of the same UNet without the camera input."""
  from dreamfusion_jax.shapes import sample  # pylint: disable=g-import-not-at-top
  prior, loaded = tiny["prior"], tiny["loaded"]
  text_only = dataclasses.replace(prior, unet=tiny["unet"])
  text_params = dict(loaded, unet={k: v for k, v in loaded["unet"].items() if k != "add_embedding"})
  prompts, key = ["a red cube", "a blue torus"], jax.random.PRNGKey(6)
  with_camera = sample.ddim_sample(prior, loaded, prompts, key, num_steps=3)
  without = sample.ddim_sample(text_only, text_params, prompts, key, num_steps=3)
  np.testing.assert_array_equal(np.asarray(with_camera), np.asarray(without))
  learned = sample.ddim_sample(prior, _learned(loaded), prompts, key, num_steps=3)
  assert float(jnp.max(jnp.abs(learned - with_camera))) > 1e-3  # the camera reaches the sampler's UNet
