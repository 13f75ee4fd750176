"""Positional encodings of 3D points: NeRF's Fourier features and mip-NeRF's integrated encoding (IPE).

IPE encodes a Gaussian N(mean, variance I) instead of a point: E[sin(2^l x)] = sin(2^l mean) *
exp(-4^l variance / 2) (Barron et al. 2021, Eq. 14), so frequencies finer than the sample's footprint
fade out instead of aliasing. DreamFusion uses IPE with L = 8 octaves (App. A).
"""

import jax
import jax.numpy as jnp


def _scales(num_freqs: int) -> jax.Array:
  return 2.0 ** jnp.arange(num_freqs, dtype=jnp.float32)  # octaves 2^0 ... 2^(L-1)


def fourier_encoding(points: jax.Array, num_freqs: int, include_input: bool = True) -> jax.Array:
  """[..., 3] -> [..., 3 * 2L (+3)]: sin and cos of 2^l x for l < L, optionally preceded by x itself."""
  scaled = (points[..., None, :] * _scales(num_freqs)[:, None]).reshape(points.shape[:-1] + (-1,))
  # cos(x) = sin(x + pi/2): one sin over the concatenation is a single fused op.
  features = jnp.sin(jnp.concatenate([scaled, scaled + 0.5 * jnp.pi], axis=-1))
  return jnp.concatenate([points, features], axis=-1) if include_input else features


def integrated_pos_enc(means: jax.Array, variances: jax.Array, num_freqs: int) -> jax.Array:
  """Expected Fourier features of N(means, variances * I): [..., 3], [...] -> [..., 3 * 2L].

  With zero variance this equals `fourier_encoding(means, num_freqs, include_input=False)`.
  """
  scales = _scales(num_freqs)
  scaled = (means[..., None, :] * scales[:, None]).reshape(means.shape[:-1] + (-1,))
  scaled_var = jnp.repeat(variances[..., None] * scales**2, 3, axis=-1)  # same order as `scaled`
  damping = jnp.exp(-0.5 * jnp.clip(scaled_var, 0.0, 1e4))  # clip: the features are ~0 long before
  features = jnp.sin(jnp.concatenate([scaled, scaled + 0.5 * jnp.pi], axis=-1))
  return features * jnp.concatenate([damping, damping], axis=-1)


def conical_variance(t_mids: jax.Array, t_deltas: jax.Array, radii: jax.Array) -> jax.Array:
  """Isotropic variance of a conical-frustum sample, for IPE.

  A frustum of length dt at distance t on a cone of radius r per unit distance has, to first order
  (mip-NeRF Eq. 7 with small dt), variance (r t)^2 / 4 in each of the two directions across the ray and
  dt^2 / 12 along it; the isotropic Gaussian keeps their mean, so the trace of the covariance is exact.

  Args:
    t_mids: [..., S] distances of the sample centres along unit rays.
    t_deltas: [..., S] lengths of the sample intervals.
    radii: [...] cone radius at unit distance of each ray.
  Returns:
    [..., S] variances.
  """
  across = (radii[..., None] * t_mids) ** 2 / 4.0
  along = t_deltas**2 / 12.0
  return (2.0 * across + along) / 3.0
