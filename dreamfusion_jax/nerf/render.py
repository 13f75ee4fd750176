"""Volume rendering of a density/albedo field with DreamFusion's shading.

Layers, each a pure function usable on its own (tests drive the lower ones with analytic densities):
  * `composite`: the quadrature weights w_i = T_i (1 - exp(-tau_i delta_i)) and composited colours.
  * `render_rays`: samples, normals, shading and compositing for rays, given any
    `field_fn(points [..., 3], variances [...]) -> (density [...], albedo [..., C])`.
  * `render_views`: rays of a batch of cameras through a Flax `Scene`, vmapped over views.

Sampling is mip-NeRF's two-pass scheme without a proposal network: `num_samples` stratified intervals
between the ray's entry and exit of the bounding sphere, then `num_importance` edges drawn by inverse
CDF from the first pass's weights (dilated by mip-NeRF's max/blur filter; positions under stop_gradient).
The second pass evaluates the same MLP on the sorted union of both edge sets, so one network serves both
passes and only the second pass is differentiated (a proposal-free simplification of mip-NeRF 360).
Samples sit at interval midpoints; distances are along unit directions.
"""

from typing import Callable, Optional

import flax
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.nerf import encoding
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.nerf.field import Scene

FieldFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

# A uniform floor on the resampling pdf (mip-NeRF's resample padding), so empty rays still get samples.
_RESAMPLE_PADDING = 0.01


@flax.struct.dataclass
class RenderOutput:
  """Rendered views; all fields lead with [B, H, W] (or the rays' leading shape for `render_rays`)."""
  rgb: jax.Array  # [..., C] shaded colour composited over the background
  albedo: jax.Array  # [..., C] unshaded albedo composited over the background (visualisation)
  depth: jax.Array  # [...] expected distance given termination: sum_i w_i t_i / max(opacity, 1e-4)
  opacity: jax.Array  # [...] sum_i w_i
  normals: jax.Array  # [..., 3] sum_i w_i n_i: world normals, not renormalised (0 where empty)
  weights: jax.Array  # [..., S] compositing weights of the final samples
  orientation: jax.Array  # [...] sum_i sg(w_i) max(0, n_i . d)^2 (DreamFusion's orientation loss)
  distortion: jax.Array  # [...] mip-NeRF 360's distortion of the weights along the ray (`distortion`)


def intersect_sphere(origins: jax.Array, directions: jax.Array, radius: float):
  """Distances (near, far) [...] where unit rays enter and leave a sphere at the origin.

  Rays starting inside get near = 0; rays that miss get near = far = 0 (no samples contribute).
  """
  b = jnp.sum(origins * directions, axis=-1)
  disc = b**2 - (jnp.sum(origins**2, axis=-1) - radius**2)
  half_chord = jnp.sqrt(jnp.maximum(disc, 0.0))
  hit = disc > 0.0
  far = jnp.where(hit, jnp.maximum(-b + half_chord, 0.0), 0.0)
  near = jnp.where(hit, jnp.clip(-b - half_chord, 0.0, far), 0.0)
  return near, far


def stratified_edges(key, near: jax.Array, far: jax.Array, num: int, randomized: bool) -> jax.Array:
  """[..., num + 1] interval edges spanning [near, far]; jittered within bins when randomized."""
  s = jnp.linspace(0.0, 1.0, num + 1)
  s = jnp.broadcast_to(s, near.shape + (num + 1,))
  if randomized:
    mids = 0.5 * (s[..., 1:] + s[..., :-1])
    lower = jnp.concatenate([s[..., :1], mids], axis=-1)
    upper = jnp.concatenate([mids, s[..., -1:]], axis=-1)
    s = lower + (upper - lower) * jax.random.uniform(key, s.shape)
  return near[..., None] + (far - near)[..., None] * s


def sample_pdf(key, edges: jax.Array, weights: jax.Array, num: int, randomized: bool) -> jax.Array:
  """[..., num] sorted distances drawn by inverse CDF from piecewise-constant weights on intervals."""
  w = weights + _RESAMPLE_PADDING / weights.shape[-1]
  cdf = jnp.cumsum(w, axis=-1) / jnp.sum(w, axis=-1, keepdims=True)
  cdf = jnp.concatenate([jnp.zeros_like(cdf[..., :1]), jnp.minimum(cdf[..., :-1], 1.0),
                         jnp.ones_like(cdf[..., :1])], axis=-1)
  u = jnp.arange(num, dtype=jnp.float32)
  u = (u + (jax.random.uniform(key, edges.shape[:-1] + (num,)) if randomized else 0.5)) / num
  # Index of the interval holding each u: how many inner cdf values lie at or below it.
  idx = jnp.sum(u[..., :, None] >= cdf[..., None, 1:-1], axis=-1)
  cdf0, cdf1 = (jnp.take_along_axis(cdf, i, axis=-1) for i in (idx, idx + 1))
  e0, e1 = (jnp.take_along_axis(edges, i, axis=-1) for i in (idx, idx + 1))
  frac = jnp.clip((u - cdf0) / jnp.maximum(cdf1 - cdf0, 1e-12), 0.0, 1.0)
  return e0 + frac * (e1 - e0)


def dilate_weights(weights: jax.Array) -> jax.Array:
  """mip-NeRF's 2-tap max then 2-tap mean filter over [..., S] weights.

  A surface inside interval i puts the weight on whichever interval's midpoint first falls inside the
  object, i or i + 1; spreading the weight to both neighbours makes resampling cover the true surface.
  """
  padded = jnp.concatenate([weights[..., :1], weights, weights[..., -1:]], axis=-1)
  maxes = jnp.maximum(padded[..., :-1], padded[..., 1:])
  return 0.5 * (maxes[..., :-1] + maxes[..., 1:])


def compositing_weights(densities: jax.Array, t_edges: jax.Array) -> jax.Array:
  """w_i = exp(-sum_{j<i} tau_j delta_j) (1 - exp(-tau_i delta_i)): [..., S], [..., S+1] -> [..., S]."""
  optical = jnp.maximum(densities, 0.0) * jnp.maximum(t_edges[..., 1:] - t_edges[..., :-1], 0.0)
  optical = jnp.minimum(optical, 1e6)  # exp(-1e6) is already 0; keeps the cumulative sum finite
  alpha = -jnp.expm1(-optical)
  transmittance = jnp.exp(-(jnp.cumsum(optical, axis=-1) - optical))
  return alpha * transmittance


def composite(densities: jax.Array, colors: jax.Array, t_edges: jax.Array,
              background: Optional[jax.Array] = None):
  """Alpha-composites per-sample colours [..., S, C]; returns (colour [..., C], weights [..., S])."""
  weights = compositing_weights(densities, t_edges)
  color = jnp.sum(weights[..., None] * colors, axis=-2)
  if background is not None:
    color = color + (1.0 - jnp.sum(weights, axis=-1, keepdims=True)) * background
  return color, weights


def distortion(weights: jax.Array, t_edges: jax.Array, scale: float) -> jax.Array:
  """mip-NeRF 360's distortion loss of each ray (Barron et al. 2022, Eq. 15), [..., S], [..., S+1] -> [...].

  For the step function w(s) that spreads w_i evenly over interval i, in distances s = t / scale, it is
  the double integral of w(s) w(s') |s - s'|: sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_i+1 - s_i),
  m_i the interval midpoints. It is small when a ray's weight sits in one short stretch (a surface) and
  grows as opacity o spreads along the ray (o^2 / 3 for o spread evenly over the whole ray), so it
  penalises haze and floaters, not opaque surfaces.
  """
  s = t_edges / scale
  mids = 0.5 * (s[..., 1:] + s[..., :-1])
  pairs = weights[..., :, None] * weights[..., None, :] * jnp.abs(mids[..., :, None] - mids[..., None, :])
  return jnp.sum(pairs, axis=(-2, -1)) + jnp.sum(weights**2 * (s[..., 1:] - s[..., :-1]), axis=-1) / 3.0


def safe_normalize(v: jax.Array) -> jax.Array:
  """v / |v| along the last axis, finite for |v| = 0 (gives 0) and for |v| near float32 overflow."""
  scale = jax.lax.stop_gradient(jnp.max(jnp.abs(v), axis=-1, keepdims=True))
  v = v / jnp.where(scale > 0.0, scale, 1.0)  # the direction does not change; |v| is now in [1, sqrt(3)]
  return v / jnp.sqrt(jnp.maximum(jnp.sum(v**2, axis=-1, keepdims=True), 1e-12))


def density_normals(field_fn: FieldFn, points: jax.Array, variances: jax.Array):
  """(density, albedo, normals) at points, with n = -grad tau / |grad tau| (DreamFusion Sec. 3.1).

  One vector-Jacobian product with a cotangent of ones gives every point's gradient at once because the
  field is pointwise; this is autodiff, not finite differences, and it is differentiable again.
  """
  density, vjp_fn, albedo = jax.vjp(lambda p: field_fn(p, variances), points, has_aux=True)
  (grad,) = vjp_fn(jnp.ones_like(density))
  return density, albedo, -safe_normalize(grad)


def _samples(rays: camera_lib.Rays, t_edges: jax.Array):
  """Midpoint sample positions [..., S, 3] and their IPE variances [..., S]."""
  t_mids = 0.5 * (t_edges[..., 1:] + t_edges[..., :-1])
  points = rays.origins[..., None, :] + t_mids[..., None] * rays.directions[..., None, :]
  variances = encoding.conical_variance(t_mids, t_edges[..., 1:] - t_edges[..., :-1], rays.radii)
  return points, variances, t_mids


def render_rays(field_fn: FieldFn, rays: camera_lib.Rays, key: jax.Array, *, light_position: jax.Array,
                mode, background: jax.Array, bound: float, num_samples: int, num_importance: int = 0,
                randomized: bool = False, ambient: float = 0.1, diffuse: float = 0.9) -> RenderOutput:
  """Renders rays [...] (any leading shape) of one view through `field_fn`.

  Args:
    field_fn: pointwise (points [..., 3], variances [...]) -> (density [...], albedo [..., C]).
    rays: the rays; directions must be unit.
    key: PRNG key for stratification and resampling (unused when not randomized).
    light_position: [3] point light; mode: scalar shading mode (shading.ALBEDO/LAMBERTIAN/TEXTURELESS).
    background: [..., C] colour behind each ray.
    bound: radius of the bounding sphere holding all samples.
    num_samples, num_importance: samples of the first pass and extra ones resampled from it.
    randomized: stratified jitter and random resampling (training) versus fixed positions.
    ambient, diffuse: l_a and l_rho of the Lambertian model.
  Returns:
    A RenderOutput with fields shaped like the rays; weights have num_samples + num_importance samples.
  """
  coarse_key, fine_key = jax.random.split(key)
  near, far = intersect_sphere(rays.origins, rays.directions, bound)
  t_edges = stratified_edges(coarse_key, near, far, num_samples, randomized)
  if num_importance > 0:
    points, variances, _ = _samples(rays, t_edges)
    coarse_weights = compositing_weights(jax.lax.stop_gradient(field_fn(points, variances)[0]), t_edges)
    extra = sample_pdf(fine_key, t_edges, dilate_weights(coarse_weights), num_importance, randomized)
    t_edges = jax.lax.stop_gradient(jnp.sort(jnp.concatenate([t_edges, extra], axis=-1), axis=-1))
  points, variances, t_mids = _samples(rays, t_edges)
  density, albedo, normals = density_normals(field_fn, points, variances)
  colors = shading.shade(albedo, normals, points, light_position, mode, ambient, diffuse)
  rgb, weights = composite(density, colors, t_edges, background)
  albedo_image, _ = composite(density, albedo, t_edges, background)
  opacity = jnp.sum(weights, axis=-1)
  facing = jnp.maximum(0.0, jnp.sum(normals * rays.directions[..., None, :], axis=-1))
  return RenderOutput(
      rgb=rgb,
      albedo=albedo_image,
      depth=jnp.sum(weights * t_mids, axis=-1) / jnp.maximum(opacity, 1e-4),
      opacity=opacity,
      normals=jnp.sum(weights[..., None] * normals, axis=-2),
      weights=weights,
      orientation=jnp.sum(jax.lax.stop_gradient(weights) * facing**2, axis=-1),
      distortion=distortion(weights, t_edges, 2.0 * bound))  # distances in bounding-sphere diameters


def _map_chunks(fn, rays: camera_lib.Rays, background: jax.Array, key, chunk: int) -> RenderOutput:
  """Applies fn(rays, background, key) to [N] rays in chunks (rematerialised, to bound memory)."""
  n = rays.radii.shape[0]
  num_chunks = -(-n // chunk)
  pad = num_chunks * chunk - n

  def split(x):
    x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0) if pad else x
    return x.reshape((num_chunks, chunk) + x.shape[1:])

  xs = (jax.tree_util.tree_map(split, rays), split(background), jax.random.split(key, num_chunks))
  out = jax.lax.map(jax.checkpoint(lambda args: fn(*args)), xs)
  return jax.tree_util.tree_map(lambda y: y.reshape((num_chunks * chunk,) + y.shape[2:])[:n], out)


def _batch_like(x: jax.Array, ref: jax.Array) -> jax.Array:
  """Gives x the batch-axis sharding of ref under explicit sharding (vmap needs its inputs to agree).

  `jax.make_mesh` meshes are Explicit: arrays created here (keys) would be replicated while the cameras
  are split over devices. Under Auto sharding or on one device this is the identity.
  """
  sharding = jax.typeof(ref).sharding
  spec = getattr(sharding, "spec", None)
  if not spec or spec[0] is None:
    return x
  return jax.sharding.reshard(x, NamedSharding(sharding.mesh, PartitionSpec(spec[0])))


def render_views(scene: Scene, params, cameras: camera_lib.Cameras, key: jax.Array, config, mode, *,
                 train: bool = True, background_key: Optional[jax.Array] = None,
                 chunk: Optional[int] = None, extra_variance=0.0) -> RenderOutput:
  """Renders B camera views of the scene; every field of the output leads with [B, H, W].

  Args:
    scene, params: the Flax Scene and its variables.
    cameras: B cameras (e.g. camera.sample_views); each view is lit by its own light_position.
    key: PRNG key for sample positions (per view) when training.
    config: full config (config.nerf.bound, config.render.*, config.shading.ambient/diffuse).
    mode: int32 [B] shading mode per view.
    train: stratified/random sampling (if config.render.stratified) and random backgrounds.
    background_key: key for background=random (default: derived from `key`).
    chunk: rays per chunk within a view (0: all at once; default config.render.chunk or 0). Chunks are
      rematerialised in the backward pass, trading compute for memory.
    extra_variance: scalar added to every sample's IPE variance, a blur of the field
      (`encoding.coarse_to_fine_variance`); ignored by the other encodings.
  """
  r = config.render
  batch = cameras.focal.shape[0]
  mode = jnp.asarray(mode, jnp.int32)
  if mode.shape != (batch,):
    raise ValueError(f"mode must be an int32 array of shape ({batch},), got shape {mode.shape}")
  if int(r.num_samples) < 1 or int(r.num_importance) < 0:
    raise ValueError(f"config.render.num_samples must be >= 1 and num_importance >= 0, "
                     f"got {r.num_samples}, {r.num_importance}")
  chunk = int(r.get("chunk", 0) if chunk is None else chunk)
  randomized = bool(train and r.stratified)
  if background_key is None:
    key, background_key = jax.random.split(key)
  all_rays = camera_lib.rays(cameras)

  def field_fn(points, variances):
    return scene.apply(params, points, variances + extra_variance)

  def one_view(view_rays, light, view_mode, view_key, bg_key):
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), view_rays)
    background = scene.apply(params, flat.directions, bg_key if train else None,
                             method=Scene.background)

    def render(chunk_rays, chunk_background, chunk_key):
      return render_rays(
          field_fn, chunk_rays, chunk_key, light_position=light, mode=view_mode,
          background=chunk_background, bound=float(config.nerf.bound),
          num_samples=int(r.num_samples), num_importance=int(r.num_importance),
          randomized=randomized, ambient=config.shading.ambient, diffuse=config.shading.diffuse)

    n = flat.radii.shape[0]
    if 0 < chunk < n:
      out = _map_chunks(render, flat, background, view_key, chunk)
    else:
      out = render(flat, background, view_key)
    side = cameras.resolution
    return jax.tree_util.tree_map(lambda y: y.reshape((side, side) + y.shape[1:]), out)

  ref = cameras.focal
  keys = _batch_like(jax.random.split(key, batch), ref)
  background_keys = _batch_like(jax.random.split(background_key, batch), ref)
  return jax.vmap(one_view)(all_rays, cameras.light_position, _batch_like(mode, ref), keys,
                            background_keys)
