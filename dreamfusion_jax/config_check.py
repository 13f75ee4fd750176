"""Checks a training config before any work: every bad value named with what is allowed.

A typo in a field name is already an error (configs are locked); this catches bad values, so that a
run never compiles for minutes and then dies on an unknown loss name or an inverted range.
"""

from typing import Iterable

from dreamfusion_jax.prior import text

CHOICES = {
    "distill": ("sds", "sjc", "ism"),
    "prior.dtype": ("float32", "bfloat16"),
    "sds.weighting": ("sigma2", "uniform", "snr_sqrt"),
    "sds.threshold": ("none", "static", "dynamic"),
    "sjc.weighting": ("sigma", "none"),
    "nerf.encoding": ("ipe", "fourier", "hashgrid"),
    "nerf.density_activation": ("exp", "softplus"),
    "nerf.background": ("mlp", "solid", "random"),
    "optim.optimizer": ("adam",),
}
POSITIVE_INTS = (
    "num_steps", "batch_per_device", "nerf.num_freqs", "nerf.width", "nerf.num_blocks",
    "nerf.background_width", "render.resolution", "render.num_samples", "sjc.num_perturb",
    "sds.num_samples", "ism.inversion_steps", "log.every", "log.images_every", "log.image_resolution",
    "log.checkpoint_every", "log.keep_checkpoints", "export.video_frames", "export.video_fps",
    "export.video_resolution", "export.mesh_resolution", "nerf.hash_levels", "nerf.hash_features",
    "nerf.hash_log2_table_size", "nerf.hash_base_resolution", "nerf.hash_max_resolution")
NON_NEGATIVE = (
    "render.num_importance", "sds.t_anneal_steps", "ism.t_anneal_steps", "ism.delta_t",
    "ism.delta_t_start", "ism.delta_s", "sjc.tick_min", "sjc.tick_trim", "shading.ambient_only_steps",
    "shading.ambient", "shading.diffuse", "reg.orientation", "reg.orientation_start",
    "reg.orientation_anneal_steps", "reg.opacity", "reg.entropy", "reg.entropy_start",
    "reg.entropy_ramp_steps", "reg.coverage", "reg.distortion",
    "reg.distortion_start", "reg.distortion_ramp_steps", "sjc.emptiness_weight",
    "sjc.center_depth_weight", "optim.warmup_steps", "optim.grad_clip", "nerf.blob_density",
    "nerf.coarse_to_fine_steps", "nerf.coarse_to_fine_start", "camera.late_elevation_step",
    "sds.guidance_scale", "sjc.guidance_scale", "ism.guidance_scale")
POSITIVE = ("nerf.bound", "nerf.blob_radius", "optim.lr", "optim.eps", "prior.camera_zoom")
PROBABILITIES = ("shading.shaded_prob", "shading.textureless_prob", "sds.t_min", "sds.t_max",
                 "sds.t_max_start", "ism.t_min", "ism.t_max", "ism.t_max_start",
                 "nerf.random_background_prob", "nerf.background_saturation",
                 "reg.coverage_max", "sds.threshold_percentile", "sds.denoise_weight")
RANGES = ("camera.elevation_range", "camera.late_elevation_range", "camera.azimuth_range",
          "camera.distance_range", "camera.focal_range", "camera.light_distance_range")
ORDERED = (("sds.t_min", "sds.t_max"), ("sds.t_min", "sds.t_max_start"),
           ("ism.t_min", "ism.t_max"), ("ism.t_min", "ism.t_max_start"),
           ("nerf.hash_base_resolution", "nerf.hash_max_resolution"))
EXPORT_FORMATS = ("mp4", "gif", "glb", "obj")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field and what is allowed."""


def _get(config, dotted: str):
  value = config
  for part in dotted.split("."):
    value = value[part]
  return value


def _check_all(config, names: Iterable[str], ok, what: str) -> list:
  return [f"config.{n} = {_get(config, n)!r}: must be {what}." for n in names if not ok(_get(config, n))]


def problems(config) -> list:
  """All problems found in `config`, as messages (empty when the config is usable)."""
  out = []
  if not str(config.prompt).strip():
    out.append('config.prompt is empty: pass --config.prompt="a red cube" (any non-empty text).')
  for name, allowed in CHOICES.items():
    if _get(config, name) not in allowed:
      out.append(f"config.{name} = {_get(config, name)!r}: must be one of {', '.join(allowed)}.")
  is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
  out += _check_all(config, POSITIVE_INTS, lambda v: is_int(v) and v > 0, "a positive integer")
  out += _check_all(config, NON_NEGATIVE, lambda v: v >= 0, ">= 0")
  out += _check_all(config, POSITIVE, lambda v: v > 0, "> 0")
  out += _check_all(config, PROBABILITIES, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
  out += _check_all(config, RANGES, lambda v: len(v) == 2 and v[0] <= v[1], "a (low, high) pair with low <= high")
  for low, high in ORDERED:
    if _get(config, low) > _get(config, high):
      out.append(f"config.{low} = {_get(config, low)} is above config.{high} = {_get(config, high)}.")
  if min(config.camera.distance_range) <= 0 or min(config.camera.focal_range) <= 0:
    out.append("config.camera.distance_range and focal_range must be positive.")
  if max(config.camera.distance_range) + config.camera.position_jitter * 3 ** 0.5 >= 10 * config.nerf.bound:
    out.append("config.camera.distance_range puts the camera implausibly far from a scene of radius "
               f"config.nerf.bound = {config.nerf.bound}.")
  if not 0.0 <= config.optim.ema_decay < 1.0:
    out.append(f"config.optim.ema_decay = {config.optim.ema_decay!r}: must be in [0, 1) (0: no moving "
               "average, export the last iterate; 0.99: average over ~100 steps).")
  if config.sds.denoise_weight != 1.0 and config.sds.threshold != "none":
    out.append(f"config.sds.denoise_weight = {config.sds.denoise_weight!r} with config.sds.threshold = "
               f"{config.sds.threshold!r}: thresholding needs the whole guided prediction, so set "
               "denoise_weight to 1 or threshold to 'none'.")
  c2f = config.nerf.coarse_to_fine_steps
  if c2f > 0 and config.nerf.encoding != "ipe":
    out.append(f"config.nerf.coarse_to_fine_steps = {c2f} works through IPE's damping: it needs "
               f"config.nerf.encoding = 'ipe', got {config.nerf.encoding!r} (or set it to 0).")
  if c2f > config.num_steps:
    out.append(f"config.nerf.coarse_to_fine_steps = {c2f} is above config.num_steps = {config.num_steps}: "
               "training would end on a blurred field that exports and scores do not see.")
  bad_formats = [f for f in config.export.formats if f not in EXPORT_FORMATS]
  if bad_formats:
    out.append(f"config.export.formats has {bad_formats}: allowed are {', '.join(EXPORT_FORMATS)}.")
  if not str(config.prior.model).strip():
    out.append("config.prior.model is empty: give a local diffusers folder or a hub id.")
  members = config.prior.ensemble
  if not isinstance(members, (tuple, list)) or not all(isinstance(m, str) and m.strip() for m in members):
    out.append(f"config.prior.ensemble = {members!r}: must be a tuple of local diffusers folders or hub "
               "ids, e.g. ('runs/prior_b/export',), or () for config.prior.model alone.")
  if not 4 <= config.nerf.hash_log2_table_size <= 24:
    out.append(f"config.nerf.hash_log2_table_size = {config.nerf.hash_log2_table_size}: must be in "
               "[4, 24] (2^24 rows per level is already 128 MB of float32 features at 2 per row).")
  words = config.prior.textureless_drop_words
  if not isinstance(words, (tuple, list)) or not all(isinstance(w, str) and w.strip() for w in words):
    out.append(f"config.prior.textureless_drop_words = {words!r}: must be a tuple of words, e.g. "
               "('red', 'blue'), or () for one prompt.")
  elif str(config.prompt).strip():
    try:
      text.drop_words(str(config.prompt), words)
    except ValueError as e:
      out.append(str(e) + ".")
  return out


def check(config) -> None:
  """Raises ConfigError listing every problem in `config`."""
  found = problems(config)
  if found:
    raise ConfigError("Invalid config:\n  " + "\n  ".join(found))
