"""DreamFusion's shading model (Sec. 3.1) and its per-view shading-mode schedule (App. A).

Each sample point is shaded before compositing: c = rho o (l_rho * max(0, n . l_hat) + l_a), where
l_hat is the unit vector from the point to the light. "Textureless" replaces the albedo rho by white so
the prior only sees geometry, which is what discourages flat, painted-on objects.
"""

import jax
import jax.numpy as jnp

# Shading-mode codes; traced per view (an int32 [B] array under jit), so one compiled step serves all.
ALBEDO, LAMBERTIAN, TEXTURELESS = 0, 1, 2
MODE_NAMES = ("albedo", "lambertian", "textureless")


def lambertian(albedo: jax.Array, normals: jax.Array, light_dir: jax.Array, ambient, diffuse) -> jax.Array:
  """Diffuse shading c = albedo * (diffuse * max(0, n . l_hat) + ambient).

  Args:
    albedo: [..., C] surface colour rho.
    normals: [..., 3] unit normals n.
    light_dir: [..., 3] unit vectors l_hat from the point towards the light.
    ambient: l_a, a scalar or [C].
    diffuse: l_rho, a scalar or [C].
  Returns:
    [..., C] shaded colour.
  """
  cosine = jnp.maximum(0.0, jnp.sum(normals * light_dir, axis=-1, keepdims=True))
  return albedo * (diffuse * cosine + ambient)


def shade(albedo: jax.Array, normals: jax.Array, points: jax.Array, light_position: jax.Array,
          mode: jax.Array, ambient, diffuse) -> jax.Array:
  """Colour of points under one of the three modes.

  Args:
    albedo: [..., C]; normals, points: [..., 3]; light_position: broadcastable to points.
    mode: int array broadcastable to albedo.shape[:-1] (typically a scalar per view): ALBEDO returns
      the albedo unchanged (the light is ignored), LAMBERTIAN shades it, TEXTURELESS shades white.
    ambient, diffuse: l_a and l_rho.
  Returns:
    [..., C] colours.
  """
  to_light = light_position - points
  light_dir = to_light / jnp.sqrt(jnp.maximum(jnp.sum(to_light**2, axis=-1, keepdims=True), 1e-12))
  lit = lambertian(albedo, normals, light_dir, ambient, diffuse)
  plain = lambertian(jnp.ones_like(albedo), normals, light_dir, ambient, diffuse)
  mode = jnp.asarray(mode)[..., None]
  return jnp.where(mode == ALBEDO, albedo, jnp.where(mode == TEXTURELESS, plain, lit))


def sample_mode(key: jax.Array, step, batch_size: int, config) -> jax.Array:
  """Per-view shading modes, int32 [B], from the paper's schedule.

  Albedo only for step < config.shading.ambient_only_steps (the paper's first 1k steps); afterwards each
  view is shaded with probability shaded_prob (else albedo), and a shaded view is textureless with
  probability textureless_prob. `step` may be traced.
  """
  sh = config.shading
  for name in ("shaded_prob", "textureless_prob"):
    if not 0.0 <= float(sh[name]) <= 1.0:
      raise ValueError(f"config.shading.{name} must be in [0, 1], got {sh[name]}")
  shaded_key, textureless_key = jax.random.split(key)
  shaded = jax.random.uniform(shaded_key, (batch_size,)) < sh.shaded_prob
  textureless = jax.random.uniform(textureless_key, (batch_size,)) < sh.textureless_prob
  mode = jnp.where(shaded, jnp.where(textureless, TEXTURELESS, LAMBERTIAN), ALBEDO)
  return jnp.where(jnp.asarray(step) < sh.ambient_only_steps, ALBEDO, mode).astype(jnp.int32)
