"""Analytic signed distance functions of the world's shapes, and ground-truth occupancy.

Every shape is centred at the origin with +y up and its "front" (the snowman's nose) facing +z, the
camera module's azimuth-0 direction. Sizes keep every shape inside a radius-0.65 ball, well inside the
NeRF's bounding sphere (radius 1.4) and large in frame for cameras at distance 1-1.5 (DreamFusion App. A).

The functions are exact distances or lower bounds of them (cone, unions), which is what sphere tracing
needs; negative inside.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.shapes import captions

# Every shape below is designed in its own units and scaled by SCALE into the world (sdf() applies it),
# which keeps the nearest cameras (distance 1, focal 1.35) from cropping most shapes.
SCALE = 0.85

# Closed-form sizes in design units (multiply by SCALE), exported so tests can check renders.
SPHERE_RADIUS = 0.45
CUBE_HALF = 0.33
CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT = 0.32, 0.38
CONE_RADIUS, CONE_HALF_HEIGHT = 0.42, 0.42
TORUS_MAJOR, TORUS_MINOR = 0.40, 0.15


def _length(v: jax.Array) -> jax.Array:
  # Safe at 0 so that jax.grad of an SDF is finite everywhere (normals come from the gradient).
  return jnp.sqrt(jnp.sum(v * v, axis=-1) + 1e-12)


def _radial(p: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(distance from the y axis, y): the meridian-plane coordinates of a solid of revolution."""
  return jnp.sqrt(p[..., 0]**2 + p[..., 2]**2 + 1e-12), p[..., 1]


def _box(p: jax.Array, half: jax.Array) -> jax.Array:
  q = jnp.abs(p) - half
  return _length(jnp.maximum(q, 0.0)) + jnp.minimum(jnp.max(q, axis=-1), 0.0)


def _capped_cylinder(p: jax.Array, radius: float, half_height: float) -> jax.Array:
  r, y = _radial(p)
  d = jnp.stack([r - radius, jnp.abs(y) - half_height], axis=-1)
  return jnp.minimum(jnp.max(d, axis=-1), 0.0) + _length(jnp.maximum(d, 0.0))


def _smooth_union(a: jax.Array, b: jax.Array, k: float) -> jax.Array:
  """Polynomial smooth minimum: blends the two surfaces over a band of width k (a snowman's neck)."""
  h = jnp.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
  return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def sphere(p: jax.Array) -> jax.Array:
  return _length(p) - SPHERE_RADIUS


def cube(p: jax.Array) -> jax.Array:
  return _box(p, jnp.full((3,), CUBE_HALF))


def cylinder(p: jax.Array) -> jax.Array:
  return _capped_cylinder(p, CYLINDER_RADIUS, CYLINDER_HALF_HEIGHT)


def cone(p: jax.Array) -> jax.Array:
  """Upright cone, base at y = -h, apex at y = +h: the intersection of the base plane and the slant."""
  r, y = _radial(p)
  h, rad = CONE_HALF_HEIGHT, CONE_RADIUS
  # The slant's outward unit normal in the meridian plane; the slant line passes through (rad, -h).
  n = np.array([2.0 * h, rad]) / np.hypot(2.0 * h, rad)
  slant = n[0] * (r - rad) + n[1] * (y + h)
  return jnp.maximum(slant, -h - y)  # max of half-space distances: exact inside, a lower bound outside


def torus(p: jax.Array) -> jax.Array:
  """Ring lying in the xz plane (seen edge-on from the front, as a ring from overhead)."""
  r, y = _radial(p)
  return jnp.sqrt((r - TORUS_MAJOR)**2 + y**2 + 1e-12) - TORUS_MINOR


def snowman(p: jax.Array) -> jax.Array:
  """Three stacked spheres with a carrot nose pointing to the front (+z): the one shape with a face."""
  body = _length(p - jnp.array([0.0, -0.30, 0.0])) - 0.30
  chest = _length(p - jnp.array([0.0, 0.10, 0.0])) - 0.22
  head = _length(p - jnp.array([0.0, 0.42, 0.0])) - 0.15
  d = _smooth_union(_smooth_union(body, chest, 0.05), head, 0.04)
  # Nose: a capsule from inside the head to 0.13 in front of its surface.
  a, b = jnp.array([0.0, 0.42, 0.05]), jnp.array([0.0, 0.42, 0.28])
  s = jnp.clip(jnp.sum((p - a) * (b - a), axis=-1) / jnp.sum((b - a)**2), 0.0, 1.0)
  nose = _length(p - (a + s[..., None] * (b - a))) - 0.04
  return jnp.minimum(d, nose)


def mushroom(p: jax.Array) -> jax.Array:
  """A stem under a domed cap (a sphere cut by a plane)."""
  stem = _capped_cylinder(p - jnp.array([0.0, -0.2, 0.0]), 0.11, 0.25)
  cap = jnp.maximum(_length(p - jnp.array([0.0, -0.22, 0.0])) - 0.52, 0.02 - p[..., 1])
  return jnp.minimum(stem, cap)


def table(p: jax.Array) -> jax.Array:
  """A square top on four legs."""
  top = _box(p - jnp.array([0.0, 0.22, 0.0]), jnp.array([0.46, 0.04, 0.46]))
  leg_xz = jnp.abs(p[..., (0, 2)]) - 0.37  # folding the legs onto one quadrant by symmetry
  leg_p = jnp.stack([leg_xz[..., 0], p[..., 1] + 0.10, leg_xz[..., 1]], axis=-1)
  leg = _box(leg_p, jnp.array([0.045, 0.30, 0.045]))
  return jnp.minimum(top, leg)


SDFS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sphere": sphere, "cube": cube, "cylinder": cylinder, "cone": cone, "torus": torus,
    "snowman": snowman, "mushroom": mushroom, "table": table,
}
assert tuple(SDFS) == captions.SHAPES, "SDFS must follow captions.SHAPES order"


def sdf(shape_index, points: jax.Array) -> jax.Array:
  """Signed distance of world `points` [..., 3] to the shape numbered `shape_index`, scaled by SCALE.

  A Python int evaluates that one shape. An integer array (broadcast to [...]) evaluates every SDF and
  selects, so a batch may mix shapes under jit/vmap at 8x the cost.
  """
  points = points / SCALE
  if isinstance(shape_index, int):
    return SCALE * SDFS[captions.SHAPES[shape_index]](points)
  all_d = SCALE * jnp.stack([f(points) for f in SDFS.values()], axis=-1)
  index = jnp.broadcast_to(jnp.asarray(shape_index, jnp.int32), all_d.shape[:-1])
  return jnp.take_along_axis(all_d, index[..., None], axis=-1)[..., 0]


def shape_index(shape_name: str) -> int:
  if shape_name not in captions.SHAPES:
    raise ValueError(f"shape_name must be one of {captions.SHAPES}, got {shape_name!r}")
  return captions.SHAPES.index(shape_name)


def occupancy(shape_name: str, points) -> jax.Array:
  """Ground truth: True where `points` [..., 3] lie inside the shape (SDF <= 0)."""
  return sdf(shape_index(shape_name), jnp.asarray(points, jnp.float32)) <= 0.0


def albedo(shape_name: str, colour_name: str) -> np.ndarray:
  """Ground-truth albedo [3] of "a {colour} {shape}": objects are one colour all over."""
  shape_index(shape_name)
  if colour_name not in captions.COLOURS:
    raise ValueError(f"colour_name must be one of {captions.COLOUR_NAMES}, got {colour_name!r}")
  return np.asarray(captions.COLOURS[colour_name], np.float32)
