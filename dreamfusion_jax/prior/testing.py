"""Priors for tests: tiny random ones saved in the diffusers layout, and an exact Gaussian one.

`tiny_prior_dir(tmp_path, "pixel" | "latent")` writes a toy prior that `load_prior` reads through the
same code path as Stable Diffusion. `GaussianPrior` is the exact ε-prediction of i.i.d. Gaussian data,
so a distillation loss's fixed point is known in closed form (the data mean).
"""

import dataclasses
import os

import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import schedule
from dreamfusion_jax.prior.stable_diffusion import Prior

KINDS = {"pixel": "tiny-pixel", "latent": "tiny-latent"}


def tiny_prior_dir(tmp_path, kind="pixel", seed=0):
  """Writes (once per folder) a tiny random prior of `kind` under tmp_path; returns its folder (str)."""
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r}; allowed: {', '.join(KINDS)}")
  path = os.path.join(str(tmp_path), KINDS[kind])
  if not os.path.isfile(os.path.join(path, "model_index.json")):
    random_init.save_prior(*random_init.build_random_prior(KINDS[kind], seed=seed), path)
  return path


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianPrior:
  """Exact denoiser of data x_0 ~ N(μ, std²) per element, μ = the mean of the text embedding.

  E[ε | x_t] = σ_t (x_t − α_t μ) / (α_t² std² + σ_t²). Quacks like `Prior` for the distillation losses
  (params are ignored); conditional and unconditional embeddings filled with different constants give
  guidance a closed form too.
  """

  std: float = 0.5
  alphas_cumprod: np.ndarray = dataclasses.field(
      default_factory=lambda: schedule.alphas_cumprod_from_config(random_init.SD_SCHEDULER)
  )
  sample_size: int = 8
  channels: int = 3
  kind: str = "pixel"
  image_size: int = 8
  camera_conditioned: bool = False

  @property
  def num_train_timesteps(self):
    return int(self.alphas_cumprod.shape[0])

  def predict_noise(self, params, x_t, t, emb, camera=None):
    if camera is not None:
      raise ValueError("GaussianPrior is text-only: it takes no camera")
    del params
    ab = schedule.per_sample(schedule.gather(self.alphas_cumprod, t), x_t)
    mu = schedule.per_sample(jnp.mean(emb, axis=(1, 2)), x_t)
    return jnp.sqrt(1.0 - ab) * (x_t - jnp.sqrt(ab) * mu) / (ab * self.std**2 + 1.0 - ab)

  guided_noise = Prior.guided_noise  # the same stacked-batch CFG arithmetic as the real prior

  def decode(self, params, x):
    del params
    return jnp.clip(x * 0.5 + 0.5, 0.0, 1.0)
