"""Mesh extraction against analytic fields: balls of known radius and a known colour field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from dreamfusion_jax.export import mesh as mesh_lib

BOUND = 1.0
RES = 32
VOXEL = 2 * BOUND / (RES - 1)


def ball(radius, peak=100.0, softness=0.25 * VOXEL, center=(0.0, 0.0, 0.0)):
  """Density peak * sigmoid((radius - |x - center|) / softness): level peak/2 sits exactly at radius."""
  c = jnp.asarray(center)

  def density(points):
    return peak * jax.nn.sigmoid((radius - jnp.linalg.norm(points - c, axis=-1)) / softness)
  return density


def color_field(points):
  return jnp.clip(0.5 + 0.5 * points, 0.0, 1.0)


def radii(mesh):
  return np.linalg.norm(np.asarray(mesh.vertices), axis=-1)


def test_ball_at_explicit_level_is_watertight_with_known_radius():
  radius = 0.6
  mesh = mesh_lib.extract_mesh(jax.jit(ball(radius)), None, BOUND, RES, level=50.0, chunk=4096)
  assert mesh.is_watertight and mesh.euler_number == 2  # one closed sphere
  assert abs(radii(mesh).mean() - radius) < 0.25 * VOXEL
  assert np.abs(radii(mesh) - radius).max() < VOXEL
  # Outward triangles: positive volume close to the ball's (a polyhedron inscribed in it is smaller).
  assert mesh.volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.05)


def rendered_silhouette_radius(density_fn, bound=BOUND):
  """Impact parameter p at which a ray through the field renders with opacity 1/2 (closed form by
  quadrature): the optical depth along x at height p, integral of tau dx over the chord, equals ln 2."""
  x = np.linspace(-bound, bound, 4001)
  p = np.linspace(0.0, bound, 2001)
  points = np.stack(np.broadcast_arrays(x[None, :], p[:, None], 0.0 * x[None, :]), axis=-1)
  depth = np.trapezoid(np.asarray(density_fn(points.reshape(-1, 3))).reshape(points.shape[:2]), x, axis=1)
  return float(np.interp(-np.log(2.0), -depth, p))  # depth decreases with p


@pytest.mark.parametrize("peak", [30.0, 3e3])
def test_auto_level_matches_rendered_silhouette_whatever_the_density_scale(peak):
  # A soft ball whose halo is opaque when the peak density is high: the renders' silhouette grows
  # with the peak and the mesh follows it, within a voxel.
  density_fn = ball(0.5, peak=peak, softness=0.5 * VOXEL)
  expected = rendered_silhouette_radius(density_fn)
  mesh = mesh_lib.extract_mesh(density_fn, None, BOUND, RES, level=None, chunk=8192)
  assert mesh.is_watertight
  assert abs(radii(mesh).mean() - expected) < 0.5 * VOXEL


def test_auto_level_ranks_silhouettes():
  # Two opaque columns along z (densities 9 and 5 per voxel) and a faint one (0.1: alpha = 1 - e^-0.4
  # < 1/2 along z). Rays with alpha > 1/2: 2 along z, 4 + 4 along x and 4 + 4 along y = 18, which are
  # exactly the rays whose maximum is 9 or 5; the level must separate them from the faint column.
  density = np.zeros((4, 4, 4))
  density[1, 1, :] = 9.0
  density[2, 2, :] = 5.0
  density[0, 3, :] = 0.1
  level = mesh_lib.auto_level(density, voxel=1.0)
  assert level == pytest.approx(0.5 * (5.0 + 0.1))
  maxima = np.concatenate([density.max(axis=a).ravel() for a in range(3)])
  assert np.sum(maxima > level) == 18


def test_vertex_colours_follow_the_colour_field_and_survive_files(tmp_path):
  mesh = mesh_lib.extract_mesh(ball(0.5), color_field, BOUND, RES, level=50.0, chunk=4096)
  expected = np.asarray(color_field(np.asarray(mesh.vertices)))
  colours = mesh.visual.vertex_colors[:, :3] / 255.0
  assert np.abs(colours - expected).max() <= 0.5 / 255 + 1e-6
  # Opposite sides of the ball have opposite colours along each axis.
  top = np.argmax(mesh.vertices[:, 1])
  bottom = np.argmin(mesh.vertices[:, 1])
  assert colours[top, 1] > 0.7 > 0.3 > colours[bottom, 1]

  paths = mesh_lib.write_mesh(mesh, str(tmp_path / "sub" / "ball"), ("glb", "obj", "ply"))
  assert [p.rsplit(".", 1)[1] for p in paths] == ["glb", "obj", "ply"]
  for path in paths:
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces), path
    assert loaded.volume == pytest.approx(mesh.volume, rel=1e-4), path
    # Colours travel with their vertices: compare each loaded vertex with its nearest original.
    _, nearest = trimesh.proximity.ProximityQuery(mesh).vertex(loaded.vertices)
    loaded_rgb = loaded.visual.vertex_colors[:, :3].astype(int)
    np.testing.assert_allclose(loaded_rgb, mesh.visual.vertex_colors[nearest, :3].astype(int), atol=1)


def test_keep_largest_drops_the_small_floater():
  big, small = ball(0.45, center=(-0.3, 0.0, 0.0)), ball(0.15, center=(0.6, 0.5, 0.0))

  def two(points):
    return jnp.maximum(big(points), small(points))
  both = mesh_lib.extract_mesh(two, None, BOUND, RES, level=50.0)
  assert len(both.split(only_watertight=False)) == 2
  one = mesh_lib.extract_mesh(two, None, BOUND, RES, level=50.0, keep_largest=1)
  assert len(one.split(only_watertight=False)) == 1
  assert one.volume == pytest.approx(4 / 3 * np.pi * 0.45**3, rel=0.05)


def test_bounding_sphere_cuts_and_closes_the_surface():
  # Density everywhere: the surface is the bounding sphere itself, closed.
  mesh = mesh_lib.extract_mesh(lambda p: jnp.full(p.shape[:1], 10.0), None, BOUND, RES, level=5.0)
  assert mesh.is_watertight
  assert abs(radii(mesh).mean() - BOUND) < VOXEL


@pytest.mark.parametrize("level", [None, 1.0])
def test_empty_field_raises_clear_error(level):
  with pytest.raises(mesh_lib.EmptyFieldError, match="empty"):
    mesh_lib.extract_mesh(lambda p: jnp.zeros(p.shape[:1]), color_field, BOUND, 16, level=level)


def test_translucent_haze_is_empty_for_auto_level_but_meshable_explicitly():
  def haze(points):
    return jnp.full(points.shape[:1], 0.1)  # alpha = 1 - exp(-0.2) < 1/2 along every axis
  with pytest.raises(mesh_lib.EmptyFieldError, match="max density 0.1"):
    mesh_lib.extract_mesh(haze, None, BOUND, 16)
  assert mesh_lib.extract_mesh(haze, None, BOUND, 16, level=0.05).is_watertight


def test_bad_arguments_raise_before_work():
  calls = []

  def spy(points):
    calls.append(1)
    return jnp.zeros(points.shape[:1])
  with pytest.raises(ValueError, match="mesh_resolution"):
    mesh_lib.extract_mesh(spy, None, BOUND, 2)
  with pytest.raises(ValueError, match="bound"):
    mesh_lib.extract_mesh(spy, None, 0.0, 16)
  with pytest.raises(ValueError, match="mesh formats"):
    mesh_lib.write_mesh(trimesh.creation.icosphere(), "/tmp/x", ("stl",))
  assert not calls


def test_chunking_pads_to_a_fixed_size():
  shapes = []

  def fn(points):
    shapes.append(points.shape)
    return points[:, 0] * 2.0
  points = np.arange(30, dtype=np.float32).reshape(10, 3)
  out = mesh_lib.evaluate_in_chunks(fn, points, chunk=4)
  np.testing.assert_array_equal(out, points[:, 0] * 2.0)
  assert set(shapes) == {(4, 3)}
