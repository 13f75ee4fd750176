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


def coarse_to_fine_variance(step, num_freqs: int, start_octave: float, steps: int) -> jax.Array:
  """Extra IPE variance at training `step` that opens the encoding's octaves one by one.

  IPE damps octave l by exp(-4^l v / 2), so with v = 4^-c octave c keeps exp(-1/2) = 0.61 of its
  amplitude, octave c + 1 only exp(-2) = 0.14 and c + 2 exp(-8): the field sees a Gaussian-blurred
  scene whose finest detail is octave c. c rises linearly from `start_octave` at step 0 to `num_freqs`
  at `steps`, after which the extra variance is 0 (at c = num_freqs it is already 4^-L, below a
  sample's own footprint variance). A coarse-to-fine schedule of the encoding's frequencies, as BARF's
  window (Lin et al. 2021) and Nerfies' (Park et al. 2021) anneal them, done through IPE's own damping.
  steps = 0 turns it off (0 at every step).
  """
  if steps <= 0:
    return jnp.zeros((), jnp.float32)
  progress = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
  octave = start_octave + (num_freqs - start_octave) * progress
  return jnp.where(progress < 1.0, 4.0 ** -octave, 0.0).astype(jnp.float32)
