"""The embedded world: SDFs against closed-form indicators, renders against projected areas, captions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base as base_config
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import sdf
from dreamfusion_jax.shapes import world

S = sdf.SCALE


def _front_camera(distance, resolution=64, focal_scale=1.0):
  """One camera on the +z axis looking at the origin, with a headlight."""
  return camera_lib.orbit(1, resolution, 0.0, distance, focal_scale, light_offset=(0.0, 0.0, 0.0))


def _scene(shape, colour, mode, background=(0.5, 0.5, 0.5)):
  bg = jnp.broadcast_to(jnp.asarray(background, jnp.float32), (1, 2, 3))
  return world.Scenes(shape=jnp.array([captions.SHAPES.index(shape)]),
                      colour=jnp.array([captions.COLOUR_NAMES.index(colour)]),
                      mode=jnp.array([mode]), background=bg, background_axis=jnp.array([[0.0, 1.0, 0.0]]))


def _random_points(n=4000, seed=0):
  return np.random.default_rng(seed).uniform(-0.7, 0.7, (n, 3)).astype(np.float32)


@pytest.mark.parametrize("shape,inside", [
    ("sphere", lambda p: np.linalg.norm(p, axis=-1) < sdf.SPHERE_RADIUS * S),
    ("cube", lambda p: np.abs(p).max(-1) < sdf.CUBE_HALF * S),
    ("cylinder", lambda p: (np.hypot(p[:, 0], p[:, 2]) < sdf.CYLINDER_RADIUS * S)
     & (np.abs(p[:, 1]) < sdf.CYLINDER_HALF_HEIGHT * S)),
    ("cone", lambda p: (np.abs(p[:, 1]) < sdf.CONE_HALF_HEIGHT * S)
     & (np.hypot(p[:, 0], p[:, 2]) < sdf.CONE_RADIUS * (sdf.CONE_HALF_HEIGHT * S - p[:, 1])
        / (2 * sdf.CONE_HALF_HEIGHT))),
    ("torus", lambda p: np.hypot(np.hypot(p[:, 0], p[:, 2]) - sdf.TORUS_MAJOR * S, p[:, 1])
     < sdf.TORUS_MINOR * S),
])
def test_occupancy_matches_closed_form_solids(shape, inside):
  p = _random_points()
  got = np.asarray(sdf.occupancy(shape, p))
  want = inside(p)
  assert want.mean() > 0.02  # the sample actually probes the shape
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", ["sphere", "cube", "cylinder", "torus"])
def test_exact_sdfs_satisfy_the_eikonal_equation(shape):
  p = jnp.asarray(_random_points(500, seed=1))
  index = sdf.shape_index(shape)
  grad = jax.vmap(jax.grad(lambda x: sdf.sdf(index, x)))(p)
  np.testing.assert_allclose(np.linalg.norm(grad, axis=-1), 1.0, atol=1e-3)


@pytest.mark.parametrize("shape", captions.SHAPES)
def test_every_shape_fits_well_inside_the_bounding_sphere(shape):
  # Points on the radius-0.6 sphere lie outside every shape; the NeRF's bound is 1.4.
  d = np.random.default_rng(2).normal(size=(2000, 3))
  p = 0.6 * d / np.linalg.norm(d, axis=-1, keepdims=True)
  assert not np.asarray(sdf.occupancy(shape, p)).any()


def test_albedo_render_centre_pixel_is_the_colour():
  image, coverage = world.render(_scene("sphere", "red", shading.ALBEDO), _front_camera(1.4))
  centre = np.asarray(image)[0, 31:33, 31:33].reshape(-1, 3)
  np.testing.assert_allclose(centre, np.broadcast_to(sdf.albedo("sphere", "red"), centre.shape), atol=1e-6)
  assert float(coverage[0, 32, 32]) == 1.0


def test_textureless_render_is_grey_and_lambertian_at_the_centre():
  # Headlight on the axis: the centre normal faces the light, so shading = ambient + diffuse = 1.
  image, _ = world.render(_scene("sphere", "blue", shading.TEXTURELESS), _front_camera(1.4))
  np.testing.assert_allclose(np.asarray(image)[0, 32, 32], 1.0, atol=2e-3)
  image, _ = world.render(_scene("sphere", "blue", shading.LAMBERTIAN), _front_camera(1.4))
  np.testing.assert_allclose(np.asarray(image)[0, 32, 32], sdf.albedo("sphere", "blue"), atol=2e-3)


def test_sphere_silhouette_area_matches_projected_disc():
  d, f, n = 1.3, 1.0, 64
  _, coverage = world.render(_scene("sphere", "green", shading.ALBEDO), _front_camera(d, n, f), supersample=4)
  r = sdf.SPHERE_RADIUS * S
  radius_px = f * n * r / np.sqrt(d**2 - r**2)  # tangent cone of a sphere seen from distance d
  np.testing.assert_allclose(float(coverage.sum()), np.pi * radius_px**2, rtol=0.02)


def test_cube_front_view_is_a_square_of_the_projected_size():
  d, f, n = 1.5, 0.8, 64
  _, coverage = world.render(_scene("cube", "yellow", shading.ALBEDO), _front_camera(d, n, f), supersample=4)
  h = sdf.CUBE_HALF * S
  side_px = 2 * h * f * n / (d - h)  # the front face is nearest, so its projection is the silhouette
  np.testing.assert_allclose(float(coverage.sum()), side_px**2, rtol=0.03)
  rows = np.asarray(coverage[0]).sum(axis=1)
  np.testing.assert_allclose(rows.max(), side_px, atol=1.0)  # a square: full rows are one side long


def test_trace_normals_of_sphere_are_radial():
  directions = np.random.default_rng(3).normal(size=(200, 3)) * [0.06, 0.06, 0.0] + [0, 0, -1]
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  origins = np.broadcast_to([0.0, 0.0, 1.5], directions.shape)
  hits = world.trace(sdf.shape_index("sphere"), jnp.asarray(origins), jnp.asarray(directions))
  assert bool(hits.hit.all())
  radial = hits.points / jnp.linalg.norm(hits.points, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(hits.normals), np.asarray(radial), atol=1e-3)
  np.testing.assert_allclose(np.linalg.norm(hits.points, axis=-1), sdf.SPHERE_RADIUS * S, atol=2e-3)


def test_mixed_and_static_shape_renders_agree():
  scenes = _scene("snowman", "purple", shading.LAMBERTIAN)
  cams = _front_camera(1.2, 32)
  mixed, _ = world.render(scenes, cams)
  static, _ = world.render(scenes, cams, static_shape=captions.SHAPES.index("snowman"))
  np.testing.assert_allclose(np.asarray(mixed), np.asarray(static), atol=1e-6)


def test_sample_batch_is_stratified_and_captions_match_scenes():
  config = base_config.get_config()
  batch = jax.jit(lambda k: world.sample_batch(k, 16, config, 16, supersample=1))(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(np.asarray(batch.scenes.shape), np.repeat(np.arange(8), 2))
  assert batch.images.shape == (16, 16, 16, 3)
  assert float(batch.images.min()) >= 0.0 and float(batch.images.max()) <= 1.0
  table = captions.caption_table()
  for i in range(16):
    text = table[int(batch.captions[i])]
    if text == captions.EMPTY:
      continue
    shape, colour = captions.parse_prompt(text)
    assert shape == captions.SHAPES[int(batch.scenes.shape[i])]
    if int(batch.scenes.mode[i]) == shading.TEXTURELESS:
      assert colour is None
    elif colour is not None:
      assert colour == captions.COLOUR_NAMES[int(batch.scenes.colour[i])]
    if text.endswith(" view"):
      assert text.endswith(f", {camera_lib.VIEW_NAMES[int(batch.view[i])]} view")


def test_shape_weights_give_each_shape_its_share_and_uniform_weights_change_nothing():
  config = base_config.get_config()
  weights = (1, 1, 1, 1, 2, 2, 2, 2)
  draw = lambda w: jax.jit(lambda k: world.sample_batch(k, 24, config, 16, supersample=1,
                                                        shape_weights=w))(jax.random.PRNGKey(3))
  weighted = draw(weights)
  np.testing.assert_array_equal(np.asarray(weighted.scenes.shape), np.repeat(np.arange(8), 2 * np.asarray(weights)))
  # Every image is its own shape's render: the same scene and camera rendered alone agree.
  cams = world.sample_cameras(jax.random.split(jax.random.PRNGKey(3), 3)[1], 24, config, 16)
  for i in (0, 3, 4, 13, 23):
    one = lambda tree: jax.tree_util.tree_map(lambda x: x[i:i + 1], tree)
    alone, _ = world.render(one(weighted.scenes), one(cams), config.shading.ambient,
                            config.shading.diffuse, 1)
    np.testing.assert_allclose(np.asarray(weighted.images[i:i + 1]), np.asarray(alone), atol=1e-5)
  uniform = draw((1,) * 8)
  default = draw(None)
  np.testing.assert_array_equal(np.asarray(uniform.images), np.asarray(default.images))
  assert world.shape_counts(24, weights) == (2, 2, 2, 2, 4, 4, 4, 4)
  with pytest.raises(ValueError, match="multiple of 12"):
    world.shape_counts(16, weights)
  with pytest.raises(ValueError, match="8 positive integers"):
    world.shape_counts(16, (1, 2))


def test_sample_captions_textureless_never_has_a_colour():
  n = 512
  scenes = world.sample_scenes(jax.random.PRNGKey(4), n).replace(mode=jnp.full((n,), shading.TEXTURELESS))
  index = world.sample_captions(jax.random.PRNGKey(5), scenes, jnp.zeros((n,), jnp.int32))
  table = captions.caption_table()
  texts = [table[int(i)] for i in index]
  assert all(captions.parse_prompt(t)[1] is None for t in texts if t)
  empty = np.mean([t == captions.EMPTY for t in texts])
  assert 0.05 < empty < 0.15  # caption dropout for classifier-free guidance (10%)


def test_batch_size_must_be_a_multiple_of_the_shape_count():
  with pytest.raises(ValueError, match="batch_size"):
    world.sample_batch(jax.random.PRNGKey(0), 12, base_config.get_config(), 16)


def test_white_backgrounds_replace_a_fraction_and_leave_the_rest_as_drawn():
  key, n = jax.random.PRNGKey(6), 2000
  plain = world.sample_scenes(key, n)
  some = world.sample_scenes(key, n, white_background_prob=0.25)
  white = np.all(np.asarray(some.background) == 1.0, axis=(1, 2))
  assert 0.22 < white.mean() < 0.28
  np.testing.assert_array_equal(np.asarray(some.background)[~white], np.asarray(plain.background)[~white])
  for field in ("shape", "colour", "mode", "background_axis"):  # nothing else changes
    np.testing.assert_array_equal(np.asarray(getattr(some, field)), np.asarray(getattr(plain, field)))
  assert not np.any(np.all(np.asarray(plain.background) == 1.0, axis=(1, 2)))


def test_render_prompt_draws_the_prompt_on_white():
  cams = _front_camera(1.5, 32)
  albedo = np.asarray(world.render_prompt("a red cube", cams, shading.ALBEDO)[0])
  np.testing.assert_allclose(albedo[0, 16, 16], captions.COLOURS["red"], atol=1e-6)  # albedo is unlit
  np.testing.assert_allclose(albedo[0, 0, 0], 1.0)  # the corner misses the cube: white background
  plain = np.asarray(world.render_prompt("a cube", cams, shading.ALBEDO)[0])  # no colour: white
  np.testing.assert_allclose(plain[0, 16, 16], captions.COLOURS["white"], atol=1e-6)
  textureless = np.asarray(world.render_prompt("a red cube", cams, shading.TEXTURELESS)[0])
  assert np.ptp(textureless[0, 16, 16]) < 1e-6  # grey: the colour is gone
  with pytest.raises(ValueError, match="prompt must read"):
    world.render_prompt("a red dodecahedron", cams, shading.ALBEDO)
