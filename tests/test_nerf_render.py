"""Volume rendering against closed forms with analytic densities (no MLP), then the Flax scene path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading

CAMERA_Z = 2.0  # analytic rays start on the +z axis (shifted sideways by `offsets`) and look along -z


def _rays(offsets, radius=1e-3):
  offsets = np.asarray(offsets, np.float32)
  origins = np.stack([offsets, np.zeros_like(offsets), np.full_like(offsets, CAMERA_Z)], -1)
  directions = np.broadcast_to(np.array([0.0, 0.0, -1.0], np.float32), origins.shape)
  return camera.Rays(origins=jnp.asarray(origins), directions=jnp.asarray(directions),
                     radii=jnp.full(offsets.shape, radius))


def _ball(sigma, radius):
  """A ball of constant density with unit albedo (any density_fn works with render_rays)."""
  def field_fn(points, variances):
    del variances
    inside = jnp.sum(points**2, axis=-1) < radius**2
    return jnp.where(inside, sigma, 0.0), jnp.ones(points.shape[:-1] + (3,))
  return field_fn


def _render(field_fn, rays, key=jax.random.PRNGKey(0), **kwargs):
  options = dict(light_position=jnp.array([0.0, 0.0, 5.0]), mode=shading.ALBEDO,
                 background=jnp.zeros(rays.radii.shape + (3,)), bound=1.0, num_samples=1024)
  options.update(kwargs)
  return render.render_rays(field_fn, rays, key, **options)


def test_intersect_sphere():
  rays = _rays([0.0, 0.6, 1.5])
  near, far = render.intersect_sphere(rays.origins, rays.directions, 1.0)
  np.testing.assert_allclose(near, [1.0, CAMERA_Z - 0.8, 0.0], atol=1e-6)
  np.testing.assert_allclose(far, [3.0, CAMERA_Z + 0.8, 0.0], atol=1e-6)


def test_composite_two_samples():
  densities = jnp.array([0.5, 2.0])
  edges = jnp.array([0.0, 1.0, 3.0])
  colors = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  color, weights = render.composite(densities, colors, edges, background=jnp.array([0.0, 0.0, 1.0]))
  w0 = 1.0 - np.exp(-0.5)
  w1 = np.exp(-0.5) * (1.0 - np.exp(-4.0))
  np.testing.assert_allclose(weights, [w0, w1], rtol=1e-6)
  np.testing.assert_allclose(color, [w0, w1, 1.0 - w0 - w1], rtol=1e-6)


@pytest.mark.parametrize("randomized", [False, True])
def test_constant_ball_opacity(randomized):
  sigma, radius = 2.0, 0.5
  offsets = np.array([0.0, 0.2, 0.4, 0.49, 0.7, 1.2])
  out = _render(_ball(sigma, radius), _rays(offsets), randomized=randomized)
  chord = 2.0 * np.sqrt(np.maximum(radius**2 - offsets**2, 0.0))
  # Midpoint quadrature misplaces each boundary by at most half an interval (<= 1/1024 here).
  np.testing.assert_allclose(out.opacity, 1.0 - np.exp(-sigma * chord), atol=5e-3)
  assert float(out.opacity[-1]) == 0.0  # the ray missing the bounding sphere


@pytest.mark.parametrize("num_samples,num_importance", [(1024, 0), (64, 128)])
def test_opaque_ball_depth(num_samples, num_importance):
  radius = 0.5
  offsets = np.array([0.0, 0.25, 0.45])
  out = _render(_ball(1e4, radius), _rays(offsets), num_samples=num_samples,
                num_importance=num_importance)
  np.testing.assert_allclose(out.opacity, 1.0, atol=1e-5)
  # 64 uniform samples alone would be off by up to 1/64; resampling concentrates samples at the hit.
  np.testing.assert_allclose(out.depth, CAMERA_Z - np.sqrt(radius**2 - offsets**2), atol=2e-3)
  assert out.weights.shape == (3, num_samples + num_importance)


def test_radial_density_normals_are_outward():
  points = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 3))
  radial = lambda p, v: (jnp.exp(-jnp.sum(p**2, -1)), jnp.ones(p.shape[:-1] + (3,)))
  density, albedo, normals = render.density_normals(radial, points, jnp.zeros(points.shape[:-1]))
  np.testing.assert_allclose(density, np.exp(-np.sum(np.asarray(points) ** 2, -1)), rtol=1e-6)
  expected = np.asarray(points) / np.linalg.norm(np.asarray(points), axis=-1, keepdims=True)
  np.testing.assert_allclose(normals, expected, atol=1e-5)
  assert albedo.shape == (4, 32, 3)


def test_rendered_normal_of_a_smooth_ball():
  radius, offsets = 0.5, np.array([0.0, 0.3])
  def smooth_ball(p, v):
    del v
    return 1e3 * jax.nn.sigmoid(200.0 * (radius - jnp.linalg.norm(p, axis=-1))), jnp.ones(p.shape[:-1] + (3,))
  out = _render(smooth_ball, _rays(offsets), num_samples=256, num_importance=128)
  hit = np.stack([offsets, np.zeros(2), np.sqrt(radius**2 - offsets**2)], -1) / radius
  np.testing.assert_allclose(out.normals, hit, atol=0.02)  # opacity ~1, so sum w n is the hit normal
  np.testing.assert_allclose(out.orientation, 0.0, atol=1e-3)  # the visible side faces the camera


def test_orientation_term_closed_forms():
  rays = _rays([0.0])
  # Density c |x|^2 has inward normals, so the near half of the ray faces away from the camera:
  # orientation = 1 - exp(-integral of c s^2 over s in [0, 1]) = 1 - exp(-c / 3).
  c = 3.0
  inward = lambda p, v: (c * jnp.sum(p**2, -1), jnp.ones(p.shape[:-1] + (3,)))
  np.testing.assert_allclose(_render(inward, rays).orientation, 1.0 - np.exp(-c / 3.0), atol=2e-3)
  # A Gaussian blob has outward normals: only its far half faces away, behind the near half's
  # transmittance exp(-A), where A = c s sqrt(pi / 2) is the optical depth of each half.
  c, s = 4.0, 0.2
  blob = lambda p, v: (c * jnp.exp(-jnp.sum(p**2, -1) / (2 * s**2)), jnp.ones(p.shape[:-1] + (3,)))
  a = c * s * np.sqrt(np.pi / 2.0)
  np.testing.assert_allclose(_render(blob, rays).orientation, np.exp(-a) * (1.0 - np.exp(-a)), atol=2e-3)


def test_sample_pdf():
  edges = jnp.linspace(0.0, 1.0, 9)
  uniform = render.sample_pdf(None, edges, jnp.ones(8), 16, randomized=False)
  np.testing.assert_allclose(uniform, (np.arange(16) + 0.5) / 16, atol=1e-6)
  # Weights 3:1 on two intervals: a quarter of the padding-free mass in the second.
  weights = jnp.zeros(8).at[2].set(3.0).at[5].set(1.0)
  samples = np.asarray(render.sample_pdf(jax.random.PRNGKey(0), edges, weights, 4000, randomized=True))
  in_a = np.mean((samples >= 2 / 8) & (samples <= 3 / 8))
  in_b = np.mean((samples >= 5 / 8) & (samples <= 6 / 8))
  assert abs(in_a - 0.75) < 0.02 and abs(in_b - 0.25) < 0.02 and np.all(np.diff(samples) >= 0)


def test_dilate_weights():
  np.testing.assert_allclose(render.dilate_weights(jnp.array([0.0, 0.0, 1.0, 0.0, 0.0])),
                             [0.0, 0.5, 1.0, 0.5, 0.0])


def test_huge_and_tiny_densities_stay_finite():
  rays = _rays([0.0, 0.3, 0.9])
  for sigma in (1e-30, 1e30):  # (the field caps its own densities; inf is not a density)
    def fn(p, v, sigma=sigma):
      return jnp.full(p.shape[:-1], sigma) * jnp.exp(-jnp.sum(p**2, -1)), jnp.ones(p.shape[:-1] + (3,))
    out = _render(fn, rays, num_samples=32, num_importance=16)
    for leaf in jax.tree_util.tree_leaves(out):
      assert np.all(np.isfinite(np.asarray(leaf))), sigma


# ---------------------------------------------------------------------------------------------------
# The Flax scene through render_views (tiny sizes: every distinct shape is one XLA compile).


def _tiny_config(**render_overrides):
  config = base.get_config()
  with config.unlocked():
    config.nerf.width = 8
    config.nerf.num_blocks = 1
    config.nerf.num_freqs = 2
    config.nerf.background_width = 4
    config.render.resolution = 4
    config.render.num_samples = 8
    config.render.num_importance = 8
    for name, value in render_overrides.items():
      config.render[name] = value
  return config


def _scene(config):
  scene = field.make_scene(config)
  return scene, field.init_params(scene, jax.random.PRNGKey(0))


def _set_density_bias(params, value):
  params = jax.tree_util.tree_map(lambda x: x, params)
  params["params"]["field"]["density"]["bias"] = jnp.full((1,), value)
  return params


def test_render_views_shapes_determinism_and_chunks():
  config = _tiny_config()
  scene, params = _scene(config)
  cams = camera.sample_views(jax.random.PRNGKey(1), 2, config)
  mode = jnp.array([shading.LAMBERTIAN, shading.TEXTURELESS])
  fn = jax.jit(lambda k, train, chunk: render.render_views(scene, params, cams, k, config, mode,
                                                           train=train, chunk=chunk),
               static_argnums=(1, 2))
  a, b = fn(jax.random.PRNGKey(2), True, 0), fn(jax.random.PRNGKey(2), True, 0)
  assert a.rgb.shape == (2, 4, 4, 3) and a.weights.shape == (2, 4, 4, 16) and a.depth.shape == (2, 4, 4)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)
  other = fn(jax.random.PRNGKey(3), True, 0)
  assert not np.allclose(a.weights, other.weights)  # stratification uses the key
  # Without training randomness the key is irrelevant and chunking changes nothing.
  e1, e2, chunked = fn(jax.random.PRNGKey(2), False, 0), fn(jax.random.PRNGKey(3), False, 0), \
      fn(jax.random.PRNGKey(2), False, 5)
  for x, y, z in zip(*(jax.tree_util.tree_leaves(o) for o in (e1, e2, chunked))):
    np.testing.assert_allclose(x, y, atol=1e-6)
    np.testing.assert_allclose(x, z, atol=1e-5)
  with pytest.raises(ValueError, match="mode"):
    render.render_views(scene, params, cams, jax.random.PRNGKey(0), config, jnp.zeros(3, jnp.int32))


@pytest.mark.parametrize("activation", ["exp", "softplus"])
def test_images_and_gradients_finite_for_extreme_densities(activation):
  config = _tiny_config()
  with config.unlocked():
    config.nerf.density_activation = activation
  scene, params = _scene(config)
  cams = camera.orbit(2, 4, 20.0, 1.3)
  mode = jnp.array([shading.LAMBERTIAN, shading.TEXTURELESS])

  def loss(p):
    out = render.render_views(scene, p, cams, jax.random.PRNGKey(0), config, mode)
    return jnp.mean(out.rgb) + jnp.mean(out.orientation) + jnp.mean(out.depth), out

  grad_fn = jax.jit(jax.grad(loss, has_aux=True))
  for bias in (-1e4, 0.0, 1e4):
    grads, out = grad_fn(_set_density_bias(params, bias))
    for leaf in jax.tree_util.tree_leaves((grads, out)):
      assert np.all(np.isfinite(np.asarray(leaf))), (activation, bias)
    if bias == 1e4:
      np.testing.assert_allclose(out.opacity, 1.0, atol=1e-6)
    if bias == -1e4:
      np.testing.assert_allclose(out.opacity, 0.0, atol=1e-6)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grad_fn(params)[0]))


def test_sharded_views_match_single_device():
  devices = jax.devices()
  config = _tiny_config(num_importance=0)
  scene, params = _scene(config)
  cams = camera.sample_views(jax.random.PRNGKey(4), len(devices), config)
  mode = jnp.full((len(devices),), shading.LAMBERTIAN, jnp.int32)
  mesh = jax.make_mesh((len(devices),), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  fn = jax.jit(lambda c, m: render.render_views(scene, params, c, jax.random.PRNGKey(5), config, m))
  sharded = fn(jax.device_put(cams, sharding), jax.device_put(mode, sharding))
  single = fn(cams, mode)
  np.testing.assert_allclose(sharded.rgb, single.rgb, atol=1e-5)


def test_distortion_is_the_double_integral_of_the_step_weights():
  """render.distortion against a brute-force double integral of w(s) w(s') |s - s'| on a fine grid."""
  rng = np.random.default_rng(0)
  edges = np.sort(rng.uniform(0.0, 3.0, 9)).astype(np.float64)
  weights = rng.uniform(0.0, 0.2, 8)
  scale = 1.5
  fine = np.linspace(edges[0], edges[-1], 20001)
  mids = 0.5 * (fine[1:] + fine[:-1])
  interval = np.clip(np.searchsorted(edges, mids) - 1, 0, 7)
  density = weights[interval] / (edges[interval + 1] - edges[interval]) * scale  # per unit of s = t / scale
  ds = (fine[1] - fine[0]) / scale
  s = mids / scale
  want = np.sum(density[:, None] * density[None, :] * np.abs(s[:, None] - s[None, :])) * ds**2
  got = float(render.distortion(jnp.asarray(weights, jnp.float32), jnp.asarray(edges, jnp.float32), scale))
  np.testing.assert_allclose(got, want, rtol=2e-3)


def test_distortion_penalises_haze_not_a_surface():
  """Opacity o spread evenly over a ray of length L costs o^2 L / 3 (scale = 1); a thin shell almost 0."""
  rays = _rays([0.0])
  o = 0.4
  # Constant density filling the bound: every sample, transmittance falling exponentially, opacity o.
  sigma = -np.log(1.0 - o) / 2.0  # the ray crosses the unit bound over a length of 2
  haze = _render(lambda p, v: (jnp.full(p.shape[:-1], sigma), jnp.ones(p.shape[:-1] + (3,))), rays,
                 num_samples=256)
  np.testing.assert_allclose(float(haze.opacity[0]), o, rtol=1e-4)
  # Exponential, not uniform, spread: for density k over [0, L], the double integral of k^2 e^(-k(s+s'))|s-s'|.
  k, length = sigma * 2.0, 1.0  # in units of the diameter (scale = 2 x bound = 2)
  grid = (np.arange(4000) + 0.5) / 4000 * length
  w = k * np.exp(-k * grid)
  want = np.sum(w[:, None] * w[None, :] * np.abs(grid[:, None] - grid[None, :])) / 4000**2
  np.testing.assert_allclose(float(haze.distortion[0]), want, rtol=1e-2)
  assert want == pytest.approx(o**2 / 3, rel=0.1)
  # An opaque ball of radius 0.5: all the weight sits just inside its surface.
  solid = _render(_ball(500.0, 0.5), rays, num_samples=256)
  assert float(solid.opacity[0]) > 0.999
  assert float(solid.distortion[0]) < 0.01 * float(haze.distortion[0]) / o**2
