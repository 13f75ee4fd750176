"""Encodings and the field against closed forms; config validation; numerics at extreme inputs."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from configs import tiny
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import encoding
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading


def _tiny_config(**nerf_overrides):
  config = base.get_config()
  with config.unlocked():
    config.nerf.width = 16
    config.nerf.num_blocks = 2
    config.nerf.num_freqs = 4
    config.nerf.background_width = 8
    for name, value in nerf_overrides.items():
      config.nerf[name] = value
  return config


def test_ipe_at_zero_variance_is_fourier():
  x = jax.random.normal(jax.random.PRNGKey(0), (7, 3))
  np.testing.assert_allclose(encoding.integrated_pos_enc(x, jnp.zeros(7), 5),
                             encoding.fourier_encoding(x, 5, include_input=False), atol=1e-6)


def test_ipe_is_the_gaussian_expectation():
  # E[sin(a x)], x ~ N(mu, var), by Gauss-Hermite quadrature, against the encoding's closed form.
  mu, var, num_freqs = np.array([[0.3, -0.7, 1.1]]), np.array([0.01]), 4
  nodes, w = np.polynomial.hermite_e.hermegauss(80)
  samples = mu[0][:, None] + np.sqrt(var[0]) * nodes[None, :]  # [3, 80]
  expected = []
  for phase in (0.0, 0.5 * np.pi):
    for level in range(num_freqs):
      expected.append(np.sum(w * np.sin(2.0**level * samples + phase), axis=-1) / np.sqrt(2 * np.pi))
  got = encoding.integrated_pos_enc(jnp.asarray(mu, jnp.float32), jnp.asarray(var, jnp.float32), num_freqs)
  np.testing.assert_allclose(got[0], np.concatenate(expected), atol=1e-5)


def test_coarse_to_fine_opens_one_octave_after_another():
  num_freqs, start, steps = 6, 2.0, 300
  var = lambda step: float(encoding.coarse_to_fine_variance(step, num_freqs, start, steps))
  # At step 0 octave `start` keeps exp(-1/2) of its amplitude (IPE's damping exp(-4^l v / 2)), the next
  # exp(-2); halfway the cut-off has moved up by half the remaining octaves; from `steps` on, no blur.
  assert np.exp(-0.5 * 4.0**2 * var(0)) == pytest.approx(np.exp(-0.5), rel=1e-6)
  assert np.exp(-0.5 * 4.0**3 * var(0)) == pytest.approx(np.exp(-2.0), rel=1e-6)
  assert np.exp(-0.5 * 4.0**4 * var(150)) == pytest.approx(np.exp(-0.5), rel=1e-6)
  blurs = [var(s) for s in range(0, steps)]
  assert all(a > b > 0 for a, b in zip(blurs, blurs[1:]))
  assert var(steps) == var(2 * steps) == 0.0
  assert float(encoding.coarse_to_fine_variance(0, num_freqs, start, 0)) == 0.0, "steps = 0: off"


def test_a_fully_blurred_field_ignores_the_encoding_weights():
  """With a huge extra IPE variance every feature is 0, so the renders cannot depend on the weights
  that read the features; without it they do."""
  config = tiny.get_config()
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.PRNGKey(0))
  flat = flax.traverse_util.flatten_dict(params["params"])
  kernel = flat[("field", "input", "kernel")]  # the layer that reads the features
  flat[("field", "input", "kernel")] = kernel + jax.random.normal(jax.random.PRNGKey(2), kernel.shape)
  changed = {"params": flax.traverse_util.unflatten_dict(flat)}
  cams = camera.orbit(2, config.render.resolution, 20.0, 1.5)
  modes = jnp.full((2,), shading.ALBEDO, jnp.int32)
  draw = lambda p, v: render.render_views(scene, p, cams, jax.random.PRNGKey(1), config, modes, train=False,
                                          extra_variance=v).rgb
  np.testing.assert_allclose(draw(params, 1e6), draw(changed, 1e6), atol=1e-6)
  assert np.abs(draw(params, 0.0) - draw(changed, 0.0)).max() > 1e-3


def test_conical_variance_matches_a_sampled_frustum():
  # Uniform points in the frustum t in [1.9, 2.1] of a cone of radius 0.05 per unit distance.
  rng = np.random.default_rng(0)
  t = rng.uniform(1.9, 2.1, 400000)
  keep = rng.uniform(0, 1, t.size) < (t / 2.1) ** 2  # cross-section area grows as t^2
  t = t[keep]
  radius = 0.05 * t * np.sqrt(rng.uniform(0, 1, t.size))
  angle = rng.uniform(0, 2 * np.pi, t.size)
  pts = np.stack([radius * np.cos(angle), radius * np.sin(angle), t], -1)
  sampled = np.trace(np.cov(pts.T)) / 3.0
  got = encoding.conical_variance(jnp.array([2.0]), jnp.array([0.2]), jnp.array(0.05))
  np.testing.assert_allclose(float(got[0]), sampled, rtol=0.03)


def test_blob_density_closed_form():
  config = _tiny_config()
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.PRNGKey(0))
  # Zero the density head: the density is then exactly exp(bias + lambda exp(-|x|^2 / (2 sigma^2))).
  params["params"]["field"]["density"] = jax.tree_util.tree_map(
      jnp.zeros_like, params["params"]["field"]["density"])
  x = jax.random.uniform(jax.random.PRNGKey(1), (64, 3), minval=-1.0, maxval=1.0)
  density = scene.apply(params, x, method=field.Scene.density)
  n = config.nerf
  expected = np.exp(-1.0 + n.blob_density * np.exp(-np.sum(np.asarray(x) ** 2, -1) / (2 * n.blob_radius**2)))
  np.testing.assert_allclose(density, expected, rtol=1e-5)


def test_albedo_activation_and_latent_channels():
  scene = field.make_scene(_tiny_config())
  params = field.init_params(scene, jax.random.PRNGKey(0))
  x = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (256, 3))
  density, albedo = scene.apply(params, x, jnp.full((256,), 1e-3))
  assert density.shape == (256,) and albedo.shape == (256, 3)
  assert np.all(np.asarray(density) > 0.0)
  assert np.all((np.asarray(albedo) > 0.0) & (np.asarray(albedo) < 1.0))
  latent = field.make_scene(_tiny_config(), out_channels=4)
  latent_params = field.init_params(latent, jax.random.PRNGKey(0))
  latent_params["params"]["field"]["albedo"]["bias"] = jnp.full((4,), 3.0)
  _, latents = latent.apply(latent_params, x)
  assert latents.shape == (256, 4) and float(jnp.max(latents)) > 1.0  # no sigmoid for latents


def test_backgrounds():
  directions = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
  directions /= jnp.linalg.norm(directions, axis=-1, keepdims=True)
  solid = field.make_scene(_tiny_config(background="solid", background_color=(0.1, 0.2, 0.3)))
  params = field.init_params(solid, jax.random.PRNGKey(0))
  np.testing.assert_allclose(solid.apply(params, directions, method=field.Scene.background),
                             np.broadcast_to([0.1, 0.2, 0.3], (32, 3)), rtol=1e-6)
  rand = field.make_scene(_tiny_config(background="random"))
  bg = lambda k: np.asarray(rand.apply(params, directions, k, method=field.Scene.background))
  a, b = bg(jax.random.PRNGKey(1)), bg(jax.random.PRNGKey(2))
  assert np.all(a == a[0]) and not np.allclose(a[0], b[0]) and np.all((a >= 0) & (a <= 1))
  env = field.make_scene(_tiny_config())
  env_params = field.init_params(env, jax.random.PRNGKey(0))
  colors = np.asarray(env.apply(env_params, directions, method=field.Scene.background))
  assert colors.shape == (32, 3) and np.all((colors > 0) & (colors < 1)) and colors.std(0).max() > 1e-3


def test_environment_map_with_random_backgrounds():
  directions = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
  directions /= jnp.linalg.norm(directions, axis=-1, keepdims=True)
  env = field.make_scene(_tiny_config())
  mixed = field.make_scene(_tiny_config(random_background_prob=0.5))
  params = field.init_params(env, jax.random.PRNGKey(0))  # the same parameters serve both
  env_map = np.asarray(env.apply(params, directions, method=field.Scene.background))
  bg = lambda k: np.asarray(mixed.apply(params, directions, k, method=field.Scene.background))
  np.testing.assert_allclose(np.asarray(mixed.apply(params, directions, method=field.Scene.background)),
                             env_map)  # no key (evaluation renders): always the environment map
  flat = []
  for i in range(200):
    colors = bg(jax.random.PRNGKey(i))
    is_flat = bool(np.all(colors == colors[0]))
    assert is_flat or np.array_equal(colors, env_map)  # per view: all flat, or all the map
    flat.append(is_flat)
  # 200 Bernoulli(1/2) draws: outside [70, 130] with probability < 3e-5.
  assert 70 <= sum(flat) <= 130
  always = field.make_scene(_tiny_config(random_background_prob=1.0))
  a = np.asarray(always.apply(params, directions, jax.random.PRNGKey(3), method=field.Scene.background))
  assert np.all(a == a[0]) and np.all((a >= 0) & (a <= 1))


def test_random_background_saturation_bounds_the_colour_spread():
  # saturation s draws s * uniform RGB + (1 - s) * one grey for all channels, so a colour's channels
  # differ by at most s; at s = 1 a draw is plain uniform RGB, as before the setting existed.
  directions = jnp.array([[0.0, 0.0, -1.0]], jnp.float32)
  spread, brightness = {}, {}
  for s in (1.0, 0.5, 0.0):
    scene = field.make_scene(_tiny_config(background="random", background_saturation=s))
    params = field.init_params(scene, jax.random.PRNGKey(0))
    colours = np.stack([np.asarray(scene.apply(params, directions, jax.random.PRNGKey(i),
                                               method=field.Scene.background))[0] for i in range(100)])
    assert np.all((colours >= 0) & (colours <= 1))
    spread[s], brightness[s] = colours.max(-1) - colours.min(-1), colours.mean(-1)
    if s == 1.0:
      np.testing.assert_array_equal(colours[7], np.asarray(jax.random.uniform(jax.random.PRNGKey(7), (3,))))
  assert spread[0.0].max() < 1e-6  # greys only
  assert spread[0.5].max() <= 0.5 + 1e-6 < spread[1.0].max()
  assert brightness[0.0].min() < 0.1 and brightness[0.0].max() > 0.9  # greys from near black to near white


@pytest.mark.parametrize("name,value", [("encoding", "hash"), ("density_activation", "relu"),
                                        ("background", "sky")])
def test_bad_config_raises(name, value):
  with pytest.raises(ValueError, match=name):
    field.make_scene(_tiny_config(**{name: value}))
  with pytest.raises(ValueError, match="background_color"):  # a solid colour needs one value per channel
    field.make_scene(_tiny_config(background="solid", background_color=(1.0, 1.0)))


def test_safe_exp_and_its_gradient_stay_finite():
  x = jnp.array([-1e5, -100.0, 0.0, 10.0, 100.0, 1e5])
  y, g = jax.vmap(jax.value_and_grad(field.safe_exp))(x)
  assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))
  np.testing.assert_allclose(y[2:4], np.exp([0.0, 10.0]), rtol=1e-6)
  np.testing.assert_allclose(g, y)  # d/dx exp = exp, also beyond the cap
