"""The multiresolution hash encoding: level sizes, indexing, trilinear interpolation, use in the field."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import hashgrid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_level_resolutions_grow_geometrically_from_base_to_max():
  res = hashgrid.level_resolutions(16, 16, 2048)
  assert res[0] == 16 and res[-1] == 2048 and len(res) == 16
  ratios = np.array(res[1:]) / np.array(res[:-1])
  np.testing.assert_allclose(ratios, 2 ** (7 / 15), rtol=0.06)  # b = (2048 / 16)^(1/15) ~ 1.38
  assert hashgrid.level_resolutions(1, 8, 8) == [8]
  with pytest.raises(ValueError, match="base_resolution <= max_resolution"):
    hashgrid.level_resolutions(4, 64, 16)


def test_dense_levels_index_every_vertex_once_and_hashed_levels_stay_in_the_table():
  n = 7
  grid = np.stack(np.meshgrid(*[np.arange(n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
  dense = np.asarray(hashgrid.vertex_index(jnp.asarray(grid), n, 1024))
  assert sorted(dense.tolist()) == list(range((n + 1) ** 3))  # a bijection onto the first rows
  hashed = np.asarray(hashgrid.vertex_index(jnp.asarray(grid), n, 64))  # 512 vertices, 64 rows
  assert hashed.min() >= 0 and hashed.max() < 64 and len(set(hashed.tolist())) > 32
  # The hash is Instant-NGP's: XOR of coordinate x prime, modulo the table size.
  v = grid[123].astype(np.uint64)
  want = (int(v[0]) * 1) ^ (int(v[1]) * 2654435761 % 2**32) ^ (int(v[2]) * 805459861 % 2**32)
  assert hashed[123] == (want % 2**32) % 64


def test_interpolation_is_exact_at_vertices_and_trilinear_inside_a_cell():
  n, size = 4, 1024
  table = jax.random.normal(jax.random.PRNGKey(0), (size, 3))
  vertex = jnp.array([[1, 2, 3]])
  at_vertex = hashgrid.interpolate_level(table, vertex / n, n)
  np.testing.assert_allclose(at_vertex, table[hashgrid.vertex_index(vertex, n, size)], atol=1e-6)
  # Along a cell edge the feature is linear; at the cell centre it is the mean of the 8 corners.
  a, b = jnp.array([1, 2, 3]), jnp.array([2, 2, 3])
  fa, fb = (hashgrid.interpolate_level(table, (p / n)[None], n)[0] for p in (a, b))
  f_third = hashgrid.interpolate_level(table, ((a + (b - a) / 3.0) / n)[None], n)[0]
  np.testing.assert_allclose(f_third, fa + (fb - fa) / 3.0, atol=1e-5)
  corners = jnp.array([1, 2, 3]) + hashgrid.CORNERS
  centre = hashgrid.interpolate_level(table, ((jnp.array([1, 2, 3]) + 0.5) / n)[None], n)[0]
  np.testing.assert_allclose(centre, table[hashgrid.vertex_index(corners, n, size)].mean(0), atol=1e-5)
  # Continuity across the upper face of the grid: points there use the last cell.
  edge = hashgrid.interpolate_level(table, jnp.array([[1.0, 0.5, 0.25]]), n)
  np.testing.assert_allclose(edge, hashgrid.interpolate_level(table, jnp.array([[1.0 - 1e-6, 0.5, 0.25]]), n),
                             atol=1e-4)


def test_hashgrid_field_learns_a_target_density_and_has_finite_normals():
  config = helpers.override(tiny.get_config(), nerf__encoding="hashgrid", nerf__hash_levels=4,
                            nerf__hash_log2_table_size=10, nerf__hash_base_resolution=4,
                            nerf__hash_max_resolution=32)
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.PRNGKey(0))
  tables = params["params"]["field"]["hash_grid"]["tables"]
  assert tables.shape == (4, 1024, 2)
  points = jax.random.uniform(jax.random.PRNGKey(1), (256, 3), minval=-1.0, maxval=1.0)
  target = (jnp.linalg.norm(points, axis=-1) < 0.5).astype(jnp.float32)

  def loss(p):
    density = scene.apply(p, points, method=field.Scene.density)
    return jnp.mean((1.0 - jnp.exp(-density) - target) ** 2)

  grads = jax.grad(loss)(params)
  assert float(jnp.abs(grads["params"]["field"]["hash_grid"]["tables"]).max()) > 0  # the tables learn
  first = float(loss(params))
  for _ in range(100):
    grads = jax.grad(loss)(params)
    params = jax.tree_util.tree_map(lambda p, g: p - 1.0 * g, params, grads)
  assert float(loss(params)) < 0.5 * first
  normal_fn = jax.grad(lambda x: scene.apply(params, x, method=field.Scene.density))
  assert np.isfinite(np.asarray(jax.vmap(normal_fn)(points))).all()
