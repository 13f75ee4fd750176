"""A prior told the camera as image channels (stable_diffusion.camera_maps): the maps' closed form, maps
added to a trained UNet that start at zero, the same forward in training and through the loader, and the
training step's learning rate for the new channels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from configs import shapes as shapes_config
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import prior_model
from dreamfusion_jax.shapes import tokenizer as tokenizer_lib
from dreamfusion_jax.shapes import train_prior


def _views(n=6, seed=3):
  return camera_lib.sample_views(jax.random.PRNGKey(seed), n, shapes_config.get_config())


def test_maps_are_where_each_pixels_ray_crosses_the_origins_plane():
  """A pixel's map is the (right, up) point where its ray meets the plane through the origin facing the
  camera, in the camera's axes and scaled by distance / depth (the conditioning's apparent size is
  focal / distance): checked against the rays the NeRF renders, for jittered, tilted training views."""
  cams = _views()
  maps = stable_diffusion.camera_maps(camera_lib.conditioning(cams), cams.resolution)
  r = camera_lib.rays(cams)
  forward, right, up = -cams.rotation[:, :, 2], cams.rotation[:, :, 0], cams.rotation[:, :, 1]
  depth = jnp.einsum("bi,bi->b", -cams.position, forward)
  along = depth[:, None, None] / jnp.einsum("bhwi,bi->bhw", r.directions, forward)
  hit = r.origins + along[..., None] * r.directions
  scale = (jnp.linalg.norm(cams.position, axis=-1) / depth)[:, None, None]
  np.testing.assert_allclose(np.asarray(maps[..., 0]),
                             np.asarray(jnp.einsum("bhwi,bi->bhw", hit, right) * scale), atol=1e-5)
  np.testing.assert_allclose(np.asarray(maps[..., 1]),
                             np.asarray(jnp.einsum("bhwi,bi->bhw", hit, up) * scale), atol=1e-5)
  assert float(jnp.max(jnp.abs(maps))) > 0.3  # the views' frames reach well off the origin


def test_an_orbits_maps_are_centred_and_scale_with_the_apparent_size():
  """A camera aimed at the origin: the maps are point-symmetric about the image centre, run right and up,
  and a camera twice as far sees twice the world in the same pixels."""
  near = camera_lib.conditioning(camera_lib.orbit(2, 16, elevation=30.0, distance=1.2))
  far = camera_lib.conditioning(camera_lib.orbit(2, 16, elevation=30.0, distance=2.4))
  m_near, m_far = stable_diffusion.camera_maps(near, 16), stable_diffusion.camera_maps(far, 16)
  np.testing.assert_allclose(np.asarray(m_near), -np.asarray(m_near[:, ::-1, ::-1]), atol=1e-5)
  assert bool(jnp.all(jnp.diff(m_near[..., 0], axis=2) > 0))  # columns to the right
  assert bool(jnp.all(jnp.diff(m_near[..., 1], axis=1) < 0))  # rows downwards
  np.testing.assert_allclose(np.asarray(m_far), 2.0 * np.asarray(m_near), rtol=1e-5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A tiny camera prior (vector input), the same with camera maps added, and that saved and loaded."""
  root = tmp_path_factory.mktemp("camera_maps")
  tok_dir = str(root / "tok")
  tok, spec, text, unet, params = helpers.tiny_prior(tok_dir, channels=(64, 64), camera_dim=8)
  map_spec = spec.replace(camera_maps=True)
  _, map_unet = prior_model.build(map_spec)
  map_params = dict(params, unet=prior_model.add_camera_maps(params["unet"]))
  out = str(root / "map_weights")
  prior_model.save_diffusers(out, map_spec, map_params, tok_dir, {"step": 0}, dtype=jnp.float32)
  prior, loaded = stable_diffusion.load_prior(out, "float32", local_files_only=True)
  return dict(spec=spec, map_spec=map_spec, text=text, unet=unet, map_unet=map_unet, params=params,
              map_params=map_params, tok=tok, tok_dir=tok_dir, prior=prior, loaded=loaded)


def _inputs(tiny, n=3):
  ids = jnp.asarray(tokenizer_lib.encode(tiny["tok"], ["a red cube", "a blue torus, side view", ""][:n]))
  context = prior_model.encode_text(tiny["text"], tiny["params"]["text"], ids)
  x = jax.random.normal(jax.random.PRNGKey(2), (n, 32, 32, 3))
  return x, jnp.asarray([20, 500, 950][:n]), context, camera_lib.conditioning(_views(n))


def _learned(unet_params, seed=5):
  """UNet params whose map channels have learned something: a standard-normal slice of conv_in."""
  kernel = unet_params["conv_in"]["kernel"]
  noise = jax.random.normal(jax.random.PRNGKey(seed), kernel[:, :, 3:].shape)
  return dict(unet_params, conv_in=dict(unet_params["conv_in"], kernel=kernel.at[:, :, 3:].set(noise)))


def test_added_maps_start_at_zero_and_learn(tiny):
  x, t, context, camera = _inputs(tiny)
  before = prior_model.predict_noise(tiny["unet"], tiny["params"]["unet"], x, t, context, camera)
  after = prior_model.predict_noise(tiny["map_unet"], tiny["map_params"]["unet"], x, t, context, camera)
  np.testing.assert_allclose(np.asarray(after), np.asarray(before), atol=1e-5)
  loss = lambda p: jnp.mean(prior_model.predict_noise(tiny["map_unet"], p, x, t, context, camera)**2)
  grad = jax.grad(loss)(tiny["map_params"]["unet"])["conv_in"]["kernel"][:, :, 3:]
  assert float(jnp.max(jnp.abs(grad))) > 0.0


def test_map_prior_loads_as_a_camera_prior_and_predicts_as_in_training(tiny):
  prior, loaded = tiny["prior"], tiny["loaded"]
  # A pixel prior although its UNet takes 5 channels: the loader looks for no VAE.
  assert prior.kind == "pixel" and prior.channels == 3 and prior.camera_conditioned
  assert stable_diffusion.camera_map_channels(prior.unet) == stable_diffusion.CAMERA_MAP_CHANNELS
  x, t, context, camera = _inputs(tiny)
  params = dict(loaded, unet=_learned(loaded["unet"]))
  ours = prior_model.predict_noise(tiny["map_unet"], params["unet"], x, t, context, camera)
  theirs = prior.predict_noise(params, x, t, context, camera)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4)
  # With the camera vector's last layer at zero, moving where the origin projects changes the prediction
  # through the maps alone: not at all while their channels are zero, clearly once they have learned.
  silent = lambda unet: dict(unet, add_embedding=dict(unet["add_embedding"], linear_2=jax.tree_util.tree_map(
      jnp.zeros_like, unet["add_embedding"]["linear_2"])))
  moved = camera.at[:, 2].add(10.0)
  for unet, changes in ((silent(loaded["unet"]), False), (silent(params["unet"]), True)):
    p = dict(loaded, unet=unet)
    delta = float(jnp.max(jnp.abs(prior.predict_noise(p, x, t, context, moved)
                                  - prior.predict_noise(p, x, t, context, camera))))
    assert (delta > 1e-3) if changes else (delta == 0.0)
  with pytest.raises(ValueError, match="camera-conditioned"):
    prior.predict_noise(params, x, t, context)


def test_maps_alone_make_a_camera_prior(tiny):
  """A UNet with maps and no camera vector is camera-conditioned too: it needs the camera and uses it."""
  spec = tiny["spec"].replace(camera_dim=0, camera_maps=True)
  _, unet = prior_model.build(spec)
  params = _learned({k: v for k, v in tiny["map_params"]["unet"].items() if k != "add_embedding"})
  assert stable_diffusion.is_camera_conditioned(unet) and unet.addition_embed_type is None
  x, t, context, camera = _inputs(tiny)
  out = prior_model.predict_noise(unet, params, x, t, context, camera)
  assert float(jnp.max(jnp.abs(prior_model.predict_noise(unet, params, x, t, context, camera[::-1]) - out))) > 1e-3
  with pytest.raises(ValueError, match="camera-conditioned"):
    prior_model.predict_noise(unet, params, x, t, context)


def test_warm_start_adds_maps_to_a_camera_prior(tiny, tmp_path):
  """--init-from-weights of a camera prior with --camera-maps: the same params, conv_in widened by zeros."""
  overrides = dict(channels=tiny["spec"].channels, text_width=tiny["spec"].text_width,
                   text_layers=tiny["spec"].text_layers, camera_dim=8)
  weights = helpers.save_export(str(tmp_path / "weights"), tiny["spec"], tiny["params"], tiny["tok_dir"],
                                overrides)
  params, _ = train_prior.warm_start_from_weights(weights, str(tmp_path / "run"),
                                                  dict(overrides, camera_maps=True))
  kernel = np.asarray(params["unet"]["conv_in"]["kernel"])
  assert kernel.shape[2] == 3 + stable_diffusion.CAMERA_MAP_CHANNELS
  np.testing.assert_array_equal(kernel[:, :, 3:], 0.0)
  np.testing.assert_array_equal(kernel[:, :, :3], np.asarray(tiny["params"]["unet"]["conv_in"]["kernel"]))
  with pytest.raises(ValueError, match="camera-maps"):  # a map prior is not continued without its maps
    maps = helpers.save_export(str(tmp_path / "maps"), tiny["map_spec"], tiny["map_params"], tiny["tok_dir"],
                               dict(overrides, camera_maps=True))
    train_prior.warm_start_from_weights(maps, str(tmp_path / "run2"), overrides)


def test_train_step_scales_the_map_channels_learning_rate_alone(tiny):
  """camera_lr_scale multiplies the update of conv_in's map channels (0 leaves them at zero, 2 doubles
  their step) and leaves its image channels' step as it was; the maps reach the UNet, so they move."""
  params = tiny["map_params"]

  def one_step(scale):
    moved = helpers.params_after_two_steps(tiny["text"], tiny["map_unet"], params, tiny["tok"], scale)
    return np.asarray(moved["unet"]["conv_in"]["kernel"]) - np.asarray(params["unet"]["conv_in"]["kernel"])

  one, zero, two = one_step(1.0), one_step(0.0), one_step(2.0)
  assert float(np.max(np.abs(one[:, :, 3:]))) > 1e-5
  np.testing.assert_array_equal(zero[:, :, 3:], 0.0)
  np.testing.assert_allclose(two[:, :, 3:], 2.0 * one[:, :, 3:], atol=1e-7)
  np.testing.assert_array_equal(two[:, :, :3], one[:, :, :3])
