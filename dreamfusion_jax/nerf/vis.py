"""Images of a RenderOutput for people: normals as colours and normalised depth."""

import jax
import jax.numpy as jnp

from dreamfusion_jax.nerf.render import RenderOutput


def normal_image(out: RenderOutput, background: float = 1.0) -> jax.Array:
  """[..., 3] in [0, 1]: each sample's n * 0.5 + 0.5 composited, over a flat `background`.

  Since the stored normals are sum_i w_i n_i, compositing n * 0.5 + 0.5 is 0.5 (normals + opacity).
  """
  opacity = out.opacity[..., None]
  return jnp.clip(0.5 * (out.normals + opacity) + (1.0 - opacity) * background, 0.0, 1.0)


def depth_image(out: RenderOutput, background: float = 1.0, threshold: float = 0.5) -> jax.Array:
  """[..., H, W] in [0, 1]: near = 0 (dark), far = 1, min/max over each image's pixels with opacity above
  `threshold`, then composited over `background` by opacity."""
  mask = out.opacity > threshold
  big = jnp.finfo(jnp.float32).max
  lo = jnp.min(jnp.where(mask, out.depth, big), axis=(-2, -1), keepdims=True)
  hi = jnp.max(jnp.where(mask, out.depth, -big), axis=(-2, -1), keepdims=True)
  has_fg = jnp.any(mask, axis=(-2, -1), keepdims=True)
  lo, hi = jnp.where(has_fg, lo, 0.0), jnp.where(has_fg, hi, 1.0)
  normalised = jnp.clip((out.depth - lo) / jnp.maximum(hi - lo, 1e-6), 0.0, 1.0)
  opacity = jnp.clip(out.opacity, 0.0, 1.0)
  return opacity * normalised + (1.0 - opacity) * background
