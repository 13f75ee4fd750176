"""Pinhole cameras, the DreamFusion camera/light distribution, and per-pixel rays.

Conventions (shared by every module that makes or reads cameras):
  * World frame: +y is up. Azimuth 0 puts the camera on the +z axis looking towards -z, so an object's
    "front" faces +z; azimuth grows towards +x. Elevation is measured up from the xz plane.
  * Camera frame is OpenGL's: the camera looks along its -z axis, +x is right, +y is up. `rotation` is
    camera-to-world, its columns are (right, up, backward) in world coordinates.
  * Rays carry unit directions, so the ray parameter t is the Euclidean distance from the camera.
"""

from typing import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

# View labels shared by the camera sampler and the view-dependent prompts (index = label).
VIEW_NAMES = ("front", "side", "back", "overhead")
FRONT, SIDE, BACK, OVERHEAD = 0, 1, 2, 3

# mip-NeRF's pixel-footprint radius: a disk of this radius has the variance of a unit-width square pixel.
_PIXEL_RADIUS = 2.0 / np.sqrt(12.0)


@flax.struct.dataclass
class Cameras:
  """A batch of B pinhole cameras with their point lights; every array leads with B."""
  position: jax.Array  # [B, 3] camera centre in world coordinates
  rotation: jax.Array  # [B, 3, 3] camera-to-world; columns are right, up, backward
  focal: jax.Array  # [B] focal length in pixels
  light_position: jax.Array  # [B, 3] point light in world coordinates
  elevation: jax.Array  # [B] degrees (the sampled value, before position jitter)
  azimuth: jax.Array  # [B] degrees in [0, 360); 0 is the front view
  view: jax.Array  # [B] int32 index into VIEW_NAMES
  resolution: int = flax.struct.field(pytree_node=False)  # square image side in pixels


@flax.struct.dataclass
class Rays:
  """Rays through pixel centres; leading dimensions are shared by all fields."""
  origins: jax.Array  # [..., 3]
  directions: jax.Array  # [..., 3] unit length
  radii: jax.Array  # [...] radius of the pixel's cone at unit distance (mip-NeRF's IPE)


def _normalize(v: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Unit vectors along the last axis, safe at zero."""
  return v / jnp.sqrt(jnp.maximum(jnp.sum(v * v, axis=-1, keepdims=True), eps))


def spherical_position(elevation, azimuth, distance) -> jax.Array:
  """Point at `distance` from the origin at (elevation, azimuth) in degrees, [..., 3]."""
  e, a = jnp.deg2rad(elevation), jnp.deg2rad(azimuth)
  return distance[..., None] * jnp.stack(
      [jnp.cos(e) * jnp.sin(a), jnp.sin(e), jnp.cos(e) * jnp.cos(a)], axis=-1)


def orbit_up(elevation, azimuth) -> jax.Array:
  """The unit tangent of increasing elevation, [..., 3].

  It equals +y at elevation 0 and, for any elevation below 90 degrees, spans the same plane with the
  viewing direction as +y does, so a look-at frame built from it is the +y-up frame. Unlike +y it stays
  well defined straight overhead, where it keeps the image's "up" pointing away from the front.
  """
  e, a = jnp.deg2rad(elevation), jnp.deg2rad(azimuth)
  return jnp.stack([-jnp.sin(e) * jnp.sin(a), jnp.cos(e), -jnp.sin(e) * jnp.cos(a)], axis=-1)


def look_at(position: jax.Array, target: jax.Array, up: jax.Array) -> jax.Array:
  """Camera-to-world rotations [..., 3, 3] looking from `position` at `target` with image-up near `up`."""
  backward = _normalize(position - target)
  right = _normalize(jnp.cross(up, backward))
  true_up = jnp.cross(backward, right)
  return jnp.stack([right, true_up, backward], axis=-1)


# What a camera-conditioned prior is told about each view (nerf.camera.conditioning), in this order.
CONDITIONING = ("elevation", "apparent_size", "centre_u", "centre_v")


def conditioning(cameras: Cameras, zoom: float = 1.0) -> jax.Array:
  """[B, 4] camera inputs of a camera-conditioned prior (CONDITIONING): what fixes where the object is drawn.

  The sampled elevation in degrees; the apparent size of a unit at the origin (focal over distance, the
  focal in image widths) x 100; and where the origin projects, image coordinates in image widths from
  the centre (u right, v up) x 100. The x100 puts the values where the UNet's sinusoidal embedding
  (periods 2 pi to 2 pi 10^4) resolves them. `zoom` divides the focal first: a view through a focal
  `zoom` times the prior's world stands for the world view it magnifies (configs/shapes.py's NERF_ZOOM).
  """
  focal = cameras.focal / (cameras.resolution * zoom)
  distance = jnp.linalg.norm(cameras.position, axis=-1)
  # The origin in camera coordinates: R^T (0 - position); the camera looks along -backward.
  local = jnp.einsum("bij,bi->bj", cameras.rotation, -cameras.position)
  depth = jnp.maximum(-local[:, 2], 1e-6)
  return jnp.stack([cameras.elevation, 100.0 * focal / distance, 100.0 * focal * local[:, 0] / depth,
                    100.0 * focal * local[:, 1] / depth], axis=-1)


def view_label(elevation, azimuth, overhead_elevation: float = 60.0) -> jax.Array:
  """DreamFusion's view label (App. A): overhead above the threshold, else front/side/back by azimuth."""
  az = jnp.mod(jnp.asarray(azimuth, jnp.float32), 360.0)
  from_front = jnp.minimum(az, 360.0 - az)  # angular distance to azimuth 0
  label = jnp.where(from_front <= 45.0, FRONT, jnp.where(jnp.abs(az - 180.0) <= 45.0, BACK, SIDE))
  return jnp.where(jnp.asarray(elevation) > overhead_elevation, OVERHEAD, label).astype(jnp.int32)


def _check_range(name: str, value: Sequence[float]) -> tuple[float, float]:
  if len(value) != 2 or not float(value[0]) <= float(value[1]):
    raise ValueError(f"config.camera.{name} must be (low, high) with low <= high, got {value!r}")
  return float(value[0]), float(value[1])


def _uniform(key, shape, value_range):
  return jax.random.uniform(key, shape, minval=value_range[0], maxval=value_range[1])


def sample_views(key: jax.Array, batch_size: int, config, step=None) -> Cameras:
  """Samples B cameras and lights from the paper's distribution (DreamFusion App. A).

  Elevation, azimuth, distance and focal scale are uniform in config.camera's ranges; the camera centre
  is jittered by U(-j, j)^3, it looks at a point ~ N(0, look_at_std^2 I) with an up vector perturbed by
  N(0, up_std^2 I). The light direction is that of N(camera position, light_std^2 I) and its distance is
  the camera distance times U(light_distance_range), which keeps lights outside the object. The stored
  elevation/azimuth and the view label are the sampled values before jitter. From training step
  config.camera.late_elevation_step on (when above 0 and `step` is given) elevations are drawn from
  config.camera.late_elevation_range instead.
  """
  cam = config.camera
  resolution = int(config.render.resolution)
  if batch_size < 1 or resolution < 1:
    raise ValueError(f"batch_size and config.render.resolution must be >= 1, got {batch_size}, {resolution}")
  elevation_range = _check_range("elevation_range", cam.elevation_range)
  azimuth_range = _check_range("azimuth_range", cam.azimuth_range)
  distance_range = _check_range("distance_range", cam.distance_range)
  focal_range = _check_range("focal_range", cam.focal_range)
  light_range = _check_range("light_distance_range", cam.light_distance_range)
  keys = dict(zip(
      ("elevation", "azimuth", "distance", "focal", "jitter", "target", "up", "light_dir", "light_dist"),
      jax.random.split(key, 9)))
  b = (batch_size,)
  if step is not None and int(cam.late_elevation_step) > 0:
    late_range = _check_range("late_elevation_range", cam.late_elevation_range)
    late = jnp.asarray(step) >= int(cam.late_elevation_step)
    elevation_range = tuple(jnp.where(late, l, e) for l, e in zip(late_range, elevation_range))
  elevation = _uniform(keys["elevation"], b, elevation_range)
  azimuth = jnp.mod(_uniform(keys["azimuth"], b, azimuth_range), 360.0)
  distance = _uniform(keys["distance"], b, distance_range)
  focal = _uniform(keys["focal"], b, focal_range) * resolution
  position = spherical_position(elevation, azimuth, distance) + cam.position_jitter * jax.random.uniform(
      keys["jitter"], b + (3,), minval=-1.0, maxval=1.0)
  target = cam.look_at_std * jax.random.normal(keys["target"], b + (3,))
  up = orbit_up(elevation, azimuth) + cam.up_std * jax.random.normal(keys["up"], b + (3,))
  light_dir = _normalize(position + cam.light_std * jax.random.normal(keys["light_dir"], b + (3,)))
  light_distance = jnp.linalg.norm(position, axis=-1) * _uniform(keys["light_dist"], b, light_range)
  return Cameras(
      position=position,
      rotation=look_at(position, target, up),
      focal=focal,
      light_position=light_dir * light_distance[:, None],
      elevation=elevation,
      azimuth=azimuth,
      view=view_label(elevation, azimuth, cam.overhead_elevation),
      resolution=resolution)


def orbit(num_views: int, resolution: int, elevation: float, distance: float, focal_scale: float = 1.0,
          light_offset: Sequence[float] = (0.5, 0.5, 0.0),
          overhead_elevation: float = 60.0) -> Cameras:
  """A turntable: `num_views` cameras at evenly spaced azimuths from 0, all looking at the origin.

  `light_offset` places the light relative to the camera in its own frame (right, up, backward), so
  every frame of the turntable is lit the same way; (0, 0, 0) is a headlight.
  """
  if num_views < 1 or resolution < 1:
    raise ValueError(f"num_views and resolution must be >= 1, got {num_views}, {resolution}")
  azimuth = jnp.arange(num_views, dtype=jnp.float32) * (360.0 / num_views)
  elevation = jnp.full((num_views,), elevation, jnp.float32)
  position = spherical_position(elevation, azimuth, jnp.full((num_views,), distance, jnp.float32))
  rotation = look_at(position, jnp.zeros_like(position), orbit_up(elevation, azimuth))
  offset = jnp.asarray(light_offset, jnp.float32)
  return Cameras(
      position=position,
      rotation=rotation,
      focal=jnp.full((num_views,), focal_scale * resolution, jnp.float32),
      light_position=position + jnp.einsum("bij,j->bi", rotation, offset),
      elevation=elevation,
      azimuth=azimuth,
      view=view_label(elevation, azimuth, overhead_elevation),
      resolution=resolution)


def rays(cameras: Cameras) -> Rays:
  """One ray per pixel centre for each camera: fields shaped [B, H, W, ...] with H = W = resolution.

  Pixel (i, j) (row i from the top) maps to the camera-frame direction
  ((j + 0.5 - W/2) / f, -(i + 0.5 - H/2) / f, -1).
  """
  n = cameras.resolution
  centres = jnp.arange(n, dtype=jnp.float32) + 0.5 - n / 2.0
  f = cameras.focal[:, None, None]
  x = jnp.broadcast_to(centres[None, None, :] / f, (f.shape[0], n, n))
  y = jnp.broadcast_to(-centres[None, :, None] / f, (f.shape[0], n, n))
  cam_dirs = jnp.stack([x, y, -jnp.ones_like(x)], axis=-1)
  dirs = jnp.einsum("bij,bhwj->bhwi", cameras.rotation, cam_dirs)
  # A pixel at angle theta off-axis subtends (1/f) cos^1.5(theta) radians on average over its two sides
  # (cos^2 along the radial side, cos across it); cos(theta) = 1/|cam_dir|.
  cos = 1.0 / jnp.linalg.norm(cam_dirs, axis=-1)
  return Rays(
      origins=jnp.broadcast_to(cameras.position[:, None, None, :], dirs.shape),
      directions=_normalize(dirs),
      radii=_PIXEL_RADIUS * cos**1.5 / f)
