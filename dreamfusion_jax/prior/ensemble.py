"""Several frozen priors as one: the mean of their noise predictions (`config.prior.ensemble`).

ε̂ = (1/n) Σ_i ε̂_i(x_t, t, text_i, camera). Each ε̂_i is −σ_t times member i's score, so the mean is the
score of the normalised geometric mean of the members' densities, Π_i p_i^(1/n): a product of experts
(Hinton 2002). Score distillation then seeks what every member finds likely, and a shape one member
alone draws wrong (its own bias, where another is right) weighs half as much. docs/benchmark.md
("An ensemble of the text-only and the camera prior") has what it did on the embedded prior.

Members must share what the step assumes of one prior: kind (pixel or latent), model-space size and
channels, and the noise schedule. Each keeps its own text encoder (the embeddings are concatenated
along the feature axis, so the step's per-view indexing of them is unchanged), prediction type and
camera input: a camera-conditioned member gets each view's camera, a text-only one does not. Latent
members are encoded and decoded by the first member's VAE, so they must share a latent space (SD 1.x
and 2.x do).

The params pytree mirrors one prior's: {"unet": (u_1, ..., u_n), "text_encoder": (...), "vae": the
first's}.
"""

import dataclasses
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax.prior import guidance


def _member_params(params, i):
  return {k: v[i] for k, v in params.items() if k in ("unet", "text_encoder")}


# What the step reads of one prior that every member must share (checked in __post_init__; the schedule
# too, by value). The ensemble takes these, and the model space's encoding and decoding, from its first.
SHARED = ("kind", "sample_size", "channels", "image_size")


def _from_first(name: str) -> property:
  return property(lambda self: getattr(self.members[0], name), doc=f"The first member's {name}.")


@dataclasses.dataclass(frozen=True, eq=False)
class PriorEnsemble:
  """n >= 2 priors (stable_diffusion.Prior) used as one; hashable by identity, like a Prior."""

  members: tuple  # stable_diffusion.Prior, ...

  def __post_init__(self):
    if len(self.members) < 2:
      raise ValueError(f"an ensemble needs at least two priors, got {len(self.members)}")
    first = self.members[0]
    for i, m in enumerate(self.members[1:], 1):
      for field in SHARED:
        if getattr(m, field) != getattr(first, field):
          raise ValueError(f"prior ensemble: member {i} ({m.name}) has {field}={getattr(m, field)!r}, the "
                           f"first ({first.name}) {getattr(first, field)!r}; members must share it")
      if m.alphas_cumprod.shape != first.alphas_cumprod.shape or not np.allclose(
          m.alphas_cumprod, first.alphas_cumprod, rtol=1e-6, atol=0):
        raise ValueError(f"prior ensemble: member {i} ({m.name}) has another noise schedule than the first "
                         f"({first.name}); the members' noise levels at one t must be the same")

  kind = _from_first("kind")
  sample_size = _from_first("sample_size")
  channels = _from_first("channels")
  image_size = _from_first("image_size")
  alphas_cumprod = _from_first("alphas_cumprod")
  num_train_timesteps = _from_first("num_train_timesteps")
  dtype = _from_first("dtype")
  encode_image = _from_first("encode_image")  # latent members share the first's VAE (module docstring)
  latents_from_render = _from_first("latents_from_render")
  decode = _from_first("decode")

  @property
  def name(self) -> str:
    return " + ".join(m.name for m in self.members)

  @property
  def camera_conditioned(self) -> bool:
    """Whether any member takes each view's camera (the step then computes it for all)."""
    return any(m.camera_conditioned for m in self.members)

  @property
  def text_widths(self) -> tuple:
    """Each member's text-embedding width: the slices of the concatenated embedding."""
    return tuple(int(m.text_encoder.config.hidden_size) for m in self.members)

  def encode_text(self, params, prompts):
    """[N, L, Σ D_i]: every member's CLIP hidden states for the prompts, side by side."""
    embs = [m.encode_text(_member_params(params, i), prompts) for i, m in enumerate(self.members)]
    lengths = {e.shape[1] for e in embs}
    if len(lengths) != 1:
      raise ValueError(f"prior ensemble: the members' tokenizers pad to different lengths {sorted(lengths)}")
    return jnp.concatenate(embs, axis=-1)

  def predict_noise(self, params, x_t, t, emb, camera=None):
    """The members' mean ε̂; emb [B, L, Σ D_i] from encode_text, camera for the camera-conditioned ones."""
    if emb.shape[-1] != sum(self.text_widths):
      raise ValueError(f"prior ensemble: text embedding width {emb.shape[-1]}, expected "
                       f"{sum(self.text_widths)} (the members' {self.text_widths} side by side)")
    embs = jnp.split(emb, np.cumsum(self.text_widths)[:-1].tolist(), axis=-1)
    total = 0.0
    for i, (m, e) in enumerate(zip(self.members, embs)):
      total = total + m.predict_noise(_member_params(params, i), x_t, t, e,
                                      camera if m.camera_conditioned else None)
    return total / len(self.members)

  def guided_noise(self, params, x_t, t, cond, uncond, guidance_scale, uncond_weight=1.0, camera=None):
    """Classifier-free guidance on the members' mean (the mean of each member's guided prediction)."""
    return guidance.guided_noise(self.predict_noise, params, x_t, t, cond, uncond, guidance_scale,
                                 uncond_weight, camera)


def combine(loaded) -> tuple:
  """[(Prior, params), ...] (n >= 2) → (PriorEnsemble, params) with the layout the module docstring gives."""
  priors = tuple(p for p, _ in loaded)
  params = {"unet": tuple(q["unet"] for _, q in loaded),
            "text_encoder": tuple(q["text_encoder"] for _, q in loaded)}
  if "vae" in loaded[0][1]:
    params["vae"] = loaded[0][1]["vae"]
  return PriorEnsemble(priors), params
