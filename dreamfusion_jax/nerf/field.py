"""The NeRF field DreamFusion optimises: a mip-NeRF 360-style residual MLP plus an environment map.

Everything here is pointwise (each point's output depends on that point only), which `render` relies on
to get all normals from one vector-Jacobian product.
"""

from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from dreamfusion_jax.nerf import encoding
from dreamfusion_jax.nerf import hashgrid

ENCODINGS = ("ipe", "fourier", "hashgrid")
DENSITY_ACTIVATIONS = ("exp", "softplus")
ALBEDO_ACTIVATIONS = ("sigmoid", "none")
BACKGROUNDS = ("mlp", "solid", "random")

# exp(30) ~ 1e13 per unit length: opaque for any sample spacing, yet density * spacing, its sum over
# 10^3 samples and the gradients stay far from float32 overflow.
MAX_LOG_DENSITY = 30.0


@jax.custom_jvp
def safe_exp(x: jax.Array) -> jax.Array:
  """exp(min(x, MAX_LOG_DENSITY)) whose gradient stays finite and nonzero beyond the cap."""
  return jnp.exp(jnp.minimum(x, MAX_LOG_DENSITY))


@safe_exp.defjvp
def _safe_exp_jvp(primals, tangents):
  y = safe_exp(primals[0])
  return y, y * tangents[0]


def _check(name: str, value: str, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"config.nerf.{name} must be one of {allowed}, got {value!r}")


class Field(nn.Module):
  """Density and albedo of 3D points (DreamFusion App. A)."""
  encoding: str = "ipe"  # ipe | fourier | hashgrid
  num_freqs: int = 8  # octaves L of the encoding
  # encoding="hashgrid": (levels, features per level, log2 table rows, base res, max res) and the
  # scene's radius, which the grid spans.
  hash_grid: tuple = (16, 2, 19, 16, 2048)
  bound: float = 1.4
  width: int = 128  # hidden width
  num_blocks: int = 5  # residual blocks
  density_activation: str = "exp"  # exp | softplus
  density_bias: float = -1.0  # added to the raw density (mip-NeRF 360's MLP default): thins the init fog
  blob_density: float = 5.0  # lambda_tau: the density blob that seeds an object at the origin ...
  blob_radius: float = 0.2  # ... sigma_tau, its radius
  out_channels: int = 3  # 3 for RGB, 4 when rendering Stable Diffusion latents directly
  albedo_activation: str = "sigmoid"  # sigmoid | none (latents are unbounded)

  @nn.compact
  def __call__(self, points: jax.Array, variances: Optional[jax.Array] = None):
    """Returns (density [...], albedo [..., out_channels]) of points [..., 3].

    `variances` [...] are the isotropic sample variances used by IPE (None: zero, i.e. plain Fourier).
    """
    if self.encoding == "ipe":
      var = jnp.zeros(points.shape[:-1], points.dtype) if variances is None else variances
      features = encoding.integrated_pos_enc(points, var, self.num_freqs)
    elif self.encoding == "hashgrid":
      levels, feats, log2_size, base, finest = self.hash_grid
      features = hashgrid.HashGrid(levels, feats, log2_size, base, finest, self.bound,
                                   name="hash_grid")(points)
    else:
      features = encoding.fourier_encoding(points, self.num_freqs)
    x = nn.Dense(self.width, name="input")(features)
    for i in range(self.num_blocks):
      # Pre-activation residual block: x + W swish(LN(x)), so the identity path carries the encoding.
      x = x + nn.Dense(self.width, name=f"block_{i}")(nn.swish(nn.LayerNorm(name=f"norm_{i}")(x)))
    x = nn.swish(nn.LayerNorm(name="norm_out")(x))
    raw_density = nn.Dense(1, name="density")(x)[..., 0]
    # The blob is added before the activation (App. A) so it multiplies an exp density.
    sq_dist = jnp.sum(points**2, axis=-1)
    raw_density = raw_density + self.density_bias + self.blob_density * jnp.exp(-sq_dist / (2.0 * self.blob_radius**2))
    if self.density_activation == "exp":
      density = safe_exp(raw_density)
    else:
      density = nn.softplus(raw_density)
    albedo = nn.Dense(self.out_channels, name="albedo")(x)
    if self.albedo_activation == "sigmoid":
      albedo = nn.sigmoid(albedo)
    return density, albedo


def random_flat_colours(key: jax.Array, shape: tuple, saturation: float = 1.0) -> jax.Array:
  """Random flat colours of `shape` [..., C]: uniform RGB pulled towards a random grey by 1 - saturation.

  At saturation 1 this is jax.random.uniform(key, shape); the shapes world draws its backgrounds at 0.5
  (shapes/world.py's sample_scenes: half a random colour, half a random grey per colour).
  """
  if saturation >= 1.0:
    return jax.random.uniform(key, shape)
  colour_key, grey_key = jax.random.split(key)
  colour = jax.random.uniform(colour_key, shape)
  grey = jax.random.uniform(grey_key, tuple(shape[:-1]) + (1,))
  return saturation * colour + (1.0 - saturation) * grey


class Background(nn.Module):
  """Colour seen along ray directions that leave the scene: an environment map or a flat colour."""
  kind: str = "mlp"  # mlp (environment map on the direction) | solid | random (one colour per view)
  color: tuple = (1.0, 1.0, 1.0)  # 1 or out_channels values: colour for solid (and for random when no key is given)
  width: int = 64  # hidden width of the environment-map MLP
  num_freqs: int = 4  # Fourier octaves of the direction: a smooth sky, not a textured one
  out_channels: int = 3
  activation: str = "sigmoid"  # sigmoid | none, as the field's albedo
  # kind="mlp" only: with this probability per call with a key (a training view), the view gets a
  # random flat colour instead of the environment map, so colour the object needs cannot live in the
  # map alone (the random-background augmentation of the PyTorch ports).
  random_prob: float = 0.0
  # How saturated a random flat colour may be: 1 draws uniform RGB; below 1 the draw is pulled towards a
  # random grey by 1 - saturation (the shapes world draws its backgrounds with 0.5).
  saturation: float = 1.0

  @nn.compact
  def __call__(self, directions: jax.Array, key: Optional[jax.Array] = None) -> jax.Array:
    """[..., 3] unit directions -> [..., out_channels] colours; `key` draws the random colour."""
    shape = directions.shape[:-1] + (self.out_channels,)
    random_flat = lambda k: jnp.broadcast_to(self._random_colour(k), shape)
    if self.kind == "mlp":
      x = encoding.fourier_encoding(directions, self.num_freqs)
      x = nn.swish(nn.Dense(self.width, name="hidden")(x))
      color = nn.Dense(self.out_channels, name="out")(x)
      color = nn.sigmoid(color) if self.activation == "sigmoid" else color
      if key is None or self.random_prob <= 0.0:
        return color
      pick_key, color_key = jax.random.split(key)
      return jnp.where(jax.random.bernoulli(pick_key, self.random_prob), random_flat(color_key), color)
    if self.kind == "random" and key is not None:
      return random_flat(key)
    return jnp.broadcast_to(jnp.asarray(self.color, jnp.float32), shape)

  def _random_colour(self, key: jax.Array) -> jax.Array:
    """One random flat colour, [out_channels], drawn with this background's saturation."""
    return random_flat_colours(key, (self.out_channels,), self.saturation)


class Scene(nn.Module):
  """The field and the background behind it; call its methods with `scene.apply(params, ..., method=)`."""
  field: Field
  env: Background

  def density(self, points: jax.Array, variances: Optional[jax.Array] = None) -> jax.Array:
    return self.field(points, variances)[0]

  def __call__(self, points: jax.Array, variances: Optional[jax.Array] = None):
    return self.field(points, variances)

  def background(self, directions: jax.Array, key: Optional[jax.Array] = None) -> jax.Array:
    return self.env(directions, key)

  def init_all(self, points: jax.Array, directions: jax.Array):
    """Touches every submodule so `init` creates all parameters."""
    return self.field(points), self.env(directions)


def make_scene(config: Any, out_channels: int = 3) -> Scene:
  """Builds the Scene from config.nerf; albedo and background are unbounded for latent rendering."""
  n = config.nerf
  _check("encoding", n.encoding, ENCODINGS)
  _check("density_activation", n.density_activation, DENSITY_ACTIVATIONS)
  _check("background", n.background, BACKGROUNDS)
  activation = n.get("albedo_activation", "sigmoid" if out_channels == 3 else "none")
  _check("albedo_activation", activation, ALBEDO_ACTIVATIONS)
  color = tuple(float(c) for c in n.background_color)
  if n.background != "mlp" and len(color) not in (1, out_channels):
    raise ValueError(f"config.nerf.background_color needs 1 or {out_channels} values, got {color}")
  for name in ("num_freqs", "width", "num_blocks", "background_width"):
    if int(n[name]) < (0 if name == "num_blocks" else 1):
      raise ValueError(f"config.nerf.{name} must be positive, got {n[name]}")
  defaults = Field.hash_grid
  grid = tuple(int(n.get(k, d)) for k, d in zip(
      ("hash_levels", "hash_features", "hash_log2_table_size", "hash_base_resolution",
       "hash_max_resolution"), defaults))
  field = Field(
      encoding=n.encoding, num_freqs=int(n.num_freqs), hash_grid=grid, bound=float(n.bound),
      width=int(n.width), num_blocks=int(n.num_blocks), density_activation=n.density_activation,
      density_bias=float(n.get("density_bias", -1.0)),
      blob_density=float(n.blob_density), blob_radius=float(n.blob_radius),
      out_channels=out_channels, albedo_activation=activation)
  env = Background(kind=n.background, color=color, width=int(n.background_width), out_channels=out_channels,
                   activation=activation, random_prob=float(n.random_background_prob),
                   saturation=float(n.background_saturation))
  return Scene(field=field, env=env)


def init_params(scene: Scene, key: jax.Array) -> dict:
  """Initial variables {"params": ...} of the scene, a plain dict for `scene.apply`."""
  points = jnp.zeros((1, 3), jnp.float32)
  directions = jnp.array([[0.0, 0.0, -1.0]], jnp.float32)
  variables = scene.init(key, points, directions, method=Scene.init_all)
  return flax.core.unfreeze(variables)
