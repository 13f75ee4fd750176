"""The fixed-point check of SDS on the world's true objects, against closed forms of an exact prior."""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import shapes as shapes_config
from dreamfusion_jax.prior import testing
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import fixed_point
from dreamfusion_jax.shapes import world


def _manhattan_distance(mask):
  """Brute force: each pixel's 4-neighbour (L1) distance to the nearest True pixel of [H, W] `mask`."""
  ys, xs = np.nonzero(mask)
  grid_y, grid_x = np.mgrid[:mask.shape[0], :mask.shape[1]]
  return np.min(np.abs(grid_y[..., None] - ys) + np.abs(grid_x[..., None] - xs), axis=-1)


def test_regions_are_the_rings_and_the_far_background():
  inside = np.zeros((1, 20, 20), bool)
  inside[0, 6:13, 5:11] = True
  inside[0, 9, 11:14] = True  # a spur, so the rings are not just a rectangle's
  masks = fixed_point.regions(inside)
  out_dist, in_dist = _manhattan_distance(inside[0]), _manhattan_distance(~inside[0])
  np.testing.assert_array_equal(masks["growth"][0], (out_dist >= 1) & (out_dist <= fixed_point.RING_PX))
  np.testing.assert_array_equal(masks["fade"][0], (in_dist >= 1) & (in_dist <= fixed_point.RING_PX))
  np.testing.assert_array_equal(masks["fog"][0], out_dist > fixed_point.FAR_PX)


@dataclasses.dataclass(frozen=True, eq=False)
class TargetPrior(testing.GaussianPrior):
  """GaussianPrior with std 0: x0_hat is the constant mu (the embedding's mean) whatever x_t, so the SDS
  residual is exactly alpha (x - mu) / sigma; every prompt encodes to `mu`."""
  std: float = 0.0
  mu: float = 1.0
  image_size: int = 32
  sample_size: int = 32

  def encode_text(self, params, prompts):
    del params
    return jnp.full((len(prompts), 2, 4), self.mu, jnp.float32)

  def encode_image(self, params, rgb):
    del params
    return 2.0 * rgb - 1.0


def _alpha_sigma(prior, t_index):
  alpha_bar = float(prior.alphas_cumprod[t_index])
  return np.sqrt(alpha_bar) * np.sqrt(1.0 - alpha_bar)


@pytest.mark.parametrize("target", ["object", "background"])
def test_pressures_of_a_known_target_are_alpha_sigma(target):
  """Two views of a grey square on grey backgrounds. A prior whose denoised image is the object's grey
  everywhere pulls every background pixel one full colour step times alpha_t sigma_t (w = sigma^2 times
  the residual's alpha / sigma): fog = growth = alpha sigma, fade = 0. One whose denoised image is the
  background erases the object at that rate instead: fade = alpha sigma, fog = growth = 0."""
  v, n, grey, backgrounds = 2, 16, 0.8, np.array([0.2, 0.4])
  covered = np.zeros((v, n, n), bool)
  covered[:, 4:11, 5:12] = True
  rgb = np.where(covered[..., None], grey, backgrounds[:, None, None, None]) * np.ones(3)
  x = jnp.asarray(2.0 * rgb - 1.0, jnp.float32)
  mu = np.full(v, 2.0 * grey - 1.0) if target == "object" else 2.0 * backgrounds - 1.0
  cond = jnp.asarray(np.broadcast_to(mu[:, None, None], (v, 2, 4)), jnp.float32)
  prior = testing.GaussianPrior(std=0.0, sample_size=n, image_size=n)
  t = 0.4
  descent = fixed_point.expected_descent(prior, None, x, cond, cond, 10.0, t, t, jax.random.PRNGKey(0), 3)
  out = fixed_point.pressures(descent, covered, np.full(3, 2.0 * grey - 1.0),
                              np.repeat(2.0 * backgrounds[:, None] - 1.0, 3, axis=1))
  rate = _alpha_sigma(prior, int(np.floor(t * prior.num_train_timesteps)))
  expected = {"fog": rate, "growth": rate, "fade": 0.0} if target == "object" else \
             {"fog": 0.0, "growth": 0.0, "fade": rate}
  for name in fixed_point.MEASURES:
    assert out[name] == pytest.approx(expected[name], abs=1e-5), name


def test_measure_on_the_world_renders():
  """End to end through the world's renders, cameras and prompts: a prior that wants the whole frame in
  the world's white (a grey, so one constant mu), on "a white sphere". The far background (no sub-pixel
  of the object) moves exactly alpha sigma; the rings hold anti-aliased edge pixels, already part white,
  so they move less, in the same directions."""
  config = shapes_config.get_config()
  t = 0.4
  config.sds.t_min = config.sds.t_max = t
  white = captions.COLOURS["white"]
  assert len(set(white)) == 1, "the test's prior targets one grey level"
  prior = TargetPrior(mu=2.0 * white[0] - 1.0)
  out = fixed_point.measure(config, prior, None, "a white sphere", num_views=3, draws=2)
  rate = _alpha_sigma(prior, int(np.floor(t * prior.num_train_timesteps)))
  assert out["fog"] == pytest.approx(rate, rel=1e-4)
  assert 0.0 < out["growth"] < rate
  assert -rate < out["fade"] < 0.0


def test_view_backgrounds_follow_the_configs_training_views():
  """The tool's backgrounds are drawn as the config's NeRF draws its random ones (s * uniform RGB +
  (1 - s) * one grey: channels within s of each other), or are its solid colour."""
  config = shapes_config.get_config()
  key = jax.random.PRNGKey(0)
  spread = {}
  for s in (1.0, 0.5):
    config.nerf.background_saturation = s
    colours = np.asarray(fixed_point.view_backgrounds(key, 256, config.nerf))
    assert colours.shape == (256, 3) and np.all((colours >= 0) & (colours <= 1))
    spread[s] = colours.max(-1) - colours.min(-1)
  assert spread[0.5].max() <= 0.5 + 1e-6 < spread[1.0].max()
  assert spread[0.5].max() > 0.4  # still colours, not greys
  config.nerf.background = "solid"
  config.nerf.background_color = (0.25, 0.5, 0.75)
  np.testing.assert_array_equal(fixed_point.view_backgrounds(key, 4, config.nerf),
                                np.tile([[0.25, 0.5, 0.75]], (4, 1)).astype(np.float32))


def test_guidance_term_alone_pulls_by_omega_alpha_sigma():
  """denoise_weight 0 keeps only w ω (ε_c − ε_u): with the exact std-0 prior conditioned on the object's
  grey and unconditioned on each view's background, every pixel moves one full colour step towards the
  object times ω α_t σ_t, whatever the render: fog = growth = ω α σ, and fade = −ω α σ (the inner ring
  is pushed on past the object's colour, not back)."""
  v, n, grey, backgrounds, omega = 2, 16, 0.8, np.array([0.2, 0.4]), 3.0
  covered = np.zeros((v, n, n), bool)
  covered[:, 3:9, 6:13] = True
  x = jnp.asarray(2.0 * np.where(covered[..., None], grey, backgrounds[:, None, None, None]) * np.ones(3) - 1.0,
                  jnp.float32)
  as_text = lambda mu: jnp.asarray(np.broadcast_to(np.asarray(mu)[:, None, None], (v, 2, 4)), jnp.float32)
  cond, uncond = as_text(np.full(v, 2.0 * grey - 1.0)), as_text(2.0 * backgrounds - 1.0)
  prior = testing.GaussianPrior(std=0.0, sample_size=n, image_size=n)
  t = 0.3
  descent = fixed_point.expected_descent(prior, None, x, cond, uncond, omega, t, t, jax.random.PRNGKey(1), 2,
                                         denoise_weight=0.0)
  out = fixed_point.pressures(descent, covered, np.full(3, 2.0 * grey - 1.0),
                              np.repeat(2.0 * backgrounds[:, None] - 1.0, 3, axis=1))
  rate = omega * _alpha_sigma(prior, int(np.floor(t * prior.num_train_timesteps)))
  for name, want in {"fog": rate, "growth": rate, "fade": -rate}.items():
    assert out[name] == pytest.approx(want, rel=1e-4), name


def test_bad_arguments_fail_before_loading_the_prior(monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red dodecahedron",
                                    "--weights", "/nonexistent"])
  with pytest.raises(ValueError, match="dodecahedron"):
    fixed_point.main()
  monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red cube", "--views", "0"])
  with pytest.raises(SystemExit):
    fixed_point.main()
  monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red cube", "--denoise-weight", "2"])
  with pytest.raises(SystemExit):
    fixed_point.main()
  monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red cube", "--weights", "/nonexistent",
                                    "--views", "2", "--by-scale"])
  with pytest.raises(SystemExit):
    fixed_point.main()
  assert "--views must be >= 3" in capsys.readouterr().err
  for bad in ("nerf.background_saturaton=0.5", "sds.t_max=1.5"):  # no such field; out of range
    monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red cube", "--weights", "/nonexistent",
                                      "--set", bad])
    with pytest.raises(SystemExit):
      fixed_point.main()
    assert bad.split("=")[0] in capsys.readouterr().err
  with pytest.raises(ValueError, match="t_lo"):
    fixed_point.expected_descent(testing.GaussianPrior(), None, jnp.zeros((1, 8, 8, 3)), None, None, 1.0,
                                 0.7, 0.6, jax.random.PRNGKey(0), 1)


def test_missing_weights_are_named(monkeypatch, tmp_path, capsys):
  monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red cube", "--weights", str(tmp_path)])
  with pytest.raises(SystemExit):
    fixed_point.main()
  err = capsys.readouterr().err
  assert "--weights" in err and str(tmp_path) in err, err


def test_apparent_scale_is_focal_over_distance():
  """Cameras at one distance and one focal length (no jitter): every view's apparent scale is the
  config's focal (in frame widths) over that distance, whatever the elevation, azimuth or resolution."""
  config = shapes_config.get_config()
  config.camera.distance_range = (1.4, 1.4)
  config.camera.focal_range = (1.1, 1.1)
  config.camera.position_jitter = 0.0
  for resolution in (16, 32):
    cams = world.sample_cameras(jax.random.PRNGKey(resolution), 8, config, resolution)
    np.testing.assert_allclose(fixed_point.apparent_scale(cams), 1.1 / 1.4, rtol=1e-5)


@pytest.mark.parametrize("views", [3, 10, 32])
def test_scale_groups_split_by_rank(views):
  scale = np.random.default_rng(views).uniform(0.5, 2.0, views)
  groups = fixed_point.scale_groups(scale, 3)
  sizes = [int(g.sum()) for g in groups]
  np.testing.assert_array_equal(np.sum(groups, axis=0), np.ones(views))  # a partition
  assert max(sizes) - min(sizes) <= 1
  for lower, upper in zip(groups, groups[1:]):
    assert scale[lower].max() < scale[upper].min()
  with pytest.raises(ValueError, match="groups"):
    fixed_point.scale_groups(scale[:2], 3)


def test_measure_by_scale_on_the_world_renders():
  """With the white-wanting prior of test_measure_on_the_world_renders: the all-views numbers are
  measure's, and each third's far background moves exactly alpha sigma, as all the views' does."""
  config = shapes_config.get_config()
  t = 0.4
  config.sds.t_min = config.sds.t_max = t
  prior = TargetPrior(mu=2.0 * captions.COLOURS["white"][0] - 1.0)
  overall, thirds = fixed_point.measure_by_scale(config, prior, None, "a white sphere", num_views=9, draws=2)
  alone = fixed_point.measure(config, prior, None, "a white sphere", num_views=9, draws=2)
  rate = _alpha_sigma(prior, int(np.floor(t * prior.num_train_timesteps)))
  assert len(thirds) == 3
  for name in fixed_point.MEASURES:
    assert overall[name] == pytest.approx(alone[name], abs=1e-7)
  for third in thirds:
    assert third["fog"] == pytest.approx(rate, rel=1e-4)


def test_the_thirds_show_the_object_ever_larger():
  """apparent_scale is the on-screen size: split by it, the true sphere's silhouette covers more pixels
  in each third than in the one before, and its width follows the scale (the sphere looks the same from
  every direction; cameras aimed at its centre, so that none crops it)."""
  config = shapes_config.get_config()
  config.camera.look_at_std = 0.0
  config.camera.position_jitter = 0.0
  _, covered, _, cams = fixed_point.true_views("a red sphere", config, 30, 32, jax.random.PRNGKey(3))
  area = covered.reshape(30, -1).sum(-1)
  means = [area[g].mean() for g in fixed_point.scale_groups(fixed_point.apparent_scale(cams), 3)]
  assert means[0] < means[1] < means[2]
  assert np.corrcoef(fixed_point.apparent_scale(cams), np.sqrt(area))[0, 1] > 0.99


def test_translation_rate_is_the_least_squares_move():
  """A descent of k J plus a part orthogonal to J moves the object by exactly k; a view that the move
  does not change (J = 0) reads 0."""
  rng = np.random.default_rng(0)
  jac = rng.normal(size=(3, 8, 8, 3))
  jac[2] = 0.0
  other = rng.normal(size=jac.shape)
  other -= np.einsum("vhwc,vhwc->v", other, jac)[:, None, None, None] / np.maximum(
      np.einsum("vhwc,vhwc->v", jac, jac), 1e-12)[:, None, None, None] * jac  # orthogonal to J per view
  k = np.array([0.3, -1.7, 5.0])
  rate = fixed_point.translation_rate(k[:, None, None, None] * jac + other, jac)
  np.testing.assert_allclose(rate, [0.3, -1.7, 0.0], atol=1e-9)


def test_a_raised_object_is_drawn_higher_by_focal_times_height_over_distance():
  """moved_views moves the object, not the picture: a sphere raised by h, seen level (elevation 0) by
  cameras aimed at the origin from distance d, is seen at angle theta = atan(h / d) and spans alpha =
  asin(r / |(d, h)|) about it, so its silhouette (an ellipse) is centred f (tan(theta + alpha) +
  tan(theta - alpha)) / 2 pixels above the image centre (~ f h / d / (1 - r^2 / d^2)); lowered, as much
  below."""
  config = shapes_config.get_config()
  config.camera.look_at_std = config.camera.position_jitter = config.camera.up_std = 0.0
  config.camera.elevation_range = (0.0, 0.0)
  _, _, backgrounds, cams = fixed_point.true_views("a red sphere", config, 4, 32, jax.random.PRNGKey(1))
  h = 0.05
  rows = {}
  for sign in (1.0, -1.0):
    rgb = fixed_point.moved_views("a red sphere", config, cams, backgrounds, [0.0, sign * h, 0.0])
    weight = np.linalg.norm(rgb - np.asarray(backgrounds)[:, None, None, :], axis=-1)  # the object's pixels
    rows[sign] = (weight * np.arange(32)[None, :, None]).sum((1, 2)) / weight.sum((1, 2))
  from dreamfusion_jax.shapes import sdf  # pylint: disable=g-import-not-at-top
  d = np.linalg.norm(np.asarray(cams.position), axis=-1)
  theta, alpha = np.arctan(h / d), np.arcsin(sdf.SCALE * sdf.SPHERE_RADIUS / np.hypot(d, h))
  centre = np.asarray(cams.focal) * (np.tan(theta + alpha) + np.tan(theta - alpha)) / 2.0
  np.testing.assert_allclose(rows[-1.0] - rows[1.0], 2.0 * centre, rtol=0.03)  # rows count downwards


def test_position_needs_a_distance(monkeypatch, capsys):
  for bad in ("0", "-0.1", "0.9"):
    monkeypatch.setattr(sys, "argv", ["fixed_point", "--prompts", "a red cube", "--weights", "/nonexistent",
                                      "--position", bad])
    with pytest.raises(SystemExit):
      fixed_point.main()
    assert "--position is the distance" in capsys.readouterr().err
  with pytest.raises(ValueError, match="distance > 0"):
    fixed_point.measure_position(shapes_config.get_config(), None, None, "a red cube", 2, 1, 0.0)
