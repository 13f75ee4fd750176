"""Multiresolution hash encoding (Instant-NGP, Müller et al. 2022), an option beside IPE.

L levels of grids with resolutions growing geometrically from `base_resolution` to `max_resolution`
(Eq. 2-3: N_l = floor(N_min b^l), b = exp((ln N_max - ln N_min) / (L - 1))). Each level stores F
features per grid vertex in a table of T = 2^log2_table_size rows; a point's feature at a level is the
trilinear interpolation of its cell's 8 corner features. Coarse levels whose (N_l + 1)^3 vertices fit
in T are indexed densely (one row per vertex, no collisions); finer ones hash the vertex
coordinates, h(x) = (x_0 pi_0 XOR x_1 pi_1 XOR x_2 pi_2) mod T with pi = (1, 2654435761, 805459861)
(Eq. 4). Levels are concatenated into L x F features for the MLP.

threestudio / stable-dreamfusion use this encoding (16 levels x 2 features, T = 2^19, N_min = 16) with a
small MLP: most of a point's cost becomes 8 L table reads instead of the IPE-MLP's matmuls. It ignores
the IPE sample variance (no anti-aliasing). Everything is pointwise, so render's one-VJP normals
still hold (the gradient of trilinear interpolation is piecewise bilinear).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PRIMES = (1, 2654435761, 805459861)  # Instant-NGP's hashing primes (pi_1 = 1 keeps x_0 coherent)
# The 8 corners of a cell as 0/1 offsets, [8, 3].
CORNERS = np.array([[(k >> d) & 1 for d in range(3)] for k in range(8)], np.int32)


def level_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list:
  """N_l for l < L (Instant-NGP Eq. 2-3); one level gives [base_resolution]."""
  if num_levels < 1 or not 1 <= base_resolution <= max_resolution:
    raise ValueError(f"hash grid needs num_levels >= 1 and 1 <= base_resolution <= max_resolution, got "
                     f"{num_levels}, {base_resolution}, {max_resolution}")
  if num_levels == 1:
    return [base_resolution]
  growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
  # The small epsilon keeps N_max itself from flooring to N_max - 1 through rounding.
  return [int(math.floor(base_resolution * growth**l + 1e-6)) for l in range(num_levels)]


def vertex_index(vertices: jax.Array, resolution: int, table_size: int) -> jax.Array:
  """Table rows of integer grid vertices [..., 3] (coordinates in 0..resolution) at one level.

  Dense (x_0 + x_1 (N+1) + x_2 (N+1)^2) when the level's (N+1)^3 vertices fit in the table, else the
  spatial hash, computed in wrapping uint32 arithmetic as in Instant-NGP.
  """
  side = resolution + 1
  if side**3 <= table_size:
    return vertices[..., 0] + side * (vertices[..., 1] + side * vertices[..., 2])
  v = vertices.astype(jnp.uint32)
  h = v[..., 0] * jnp.uint32(PRIMES[0])
  h = h ^ (v[..., 1] * jnp.uint32(PRIMES[1]))
  h = h ^ (v[..., 2] * jnp.uint32(PRIMES[2]))
  return (h & jnp.uint32(table_size - 1)).astype(jnp.int32)  # table_size is a power of two


def interpolate_level(table: jax.Array, unit_points: jax.Array, resolution: int) -> jax.Array:
  """Trilinear interpolation of one level's table [T, F] at points [..., 3] in [0, 1]^3 -> [..., F]."""
  scaled = unit_points * resolution
  # Points on the upper face fall in the last cell, not one past it.
  low = jnp.clip(jnp.floor(scaled), 0, resolution - 1).astype(jnp.int32)
  frac = scaled - low
  vertices = low[..., None, :] + CORNERS  # [..., 8, 3]
  weights = jnp.prod(jnp.where(CORNERS == 1, frac[..., None, :], 1.0 - frac[..., None, :]), axis=-1)
  rows = table[vertex_index(vertices, resolution, table.shape[0])]  # [..., 8, F]
  return jnp.einsum("...k,...kf->...f", weights, rows)


class HashGrid(nn.Module):
  """Points [..., 3] in [-bound, bound]^3 -> features [..., num_levels * features_per_level]."""
  num_levels: int = 16
  features_per_level: int = 2
  log2_table_size: int = 19
  base_resolution: int = 16
  max_resolution: int = 2048
  bound: float = 1.0

  @nn.compact
  def __call__(self, points: jax.Array) -> jax.Array:
    resolutions = level_resolutions(self.num_levels, self.base_resolution, self.max_resolution)
    size = 2**self.log2_table_size
    # Instant-NGP initialises the tables U(-1e-4, 1e-4): features start near zero, the MLP sees the bias.
    init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -1e-4, 1e-4)
    tables = self.param("tables", init, (self.num_levels, size, self.features_per_level))
    unit = jnp.clip((points / self.bound + 1.0) * 0.5, 0.0, 1.0)
    features = [interpolate_level(tables[l], unit, n) for l, n in enumerate(resolutions)]
    return jnp.concatenate(features, axis=-1)
