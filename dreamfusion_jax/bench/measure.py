"""Measuring one jitted program: XLA's FLOP and memory counts, timed calls, and the full training step.

`build` makes everything the step needs once (prior, prompt embeddings, scene, optimizer);
`bench_step` compiles and times `step.make_train_step`, the code training runs, on a mesh of the
first k devices. The pieces of the step are timed alone in `bench.pieces`.
"""

import contextlib
import dataclasses
import os
import resource
import statistics
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from dreamfusion_jax import config_check
from dreamfusion_jax import distributed
from dreamfusion_jax import step as step_lib
from dreamfusion_jax.nerf import field
from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib

DEFAULT_PROMPT = "a DSLR photo of a corgi"
# Dense bf16 tensor-core peaks (NVIDIA H100 / H200 SXM datasheets: 1979 TFLOP/s with 2:4 sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}
TIMING_METHOD = ("warm-up calls, then N calls each blocked on (median ms), then N calls with one sync "
                 "at the end (per second); FLOPs: XLA cost analysis of the compiled per-device program")


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a step needs, built once; prior params/text are ShapeDtypeStructs when dry."""
  config: Any
  prior: stable_diffusion.Prior
  prior_params: dict  # {"unet", "vae"?}: the frozen params the step takes
  text: text_lib.TextEmbeddings
  scene: field.Scene
  optimizer: optax.GradientTransformation
  dry: bool


def xla_flops(stage) -> Optional[float]:
  """FLOPs of a jax Lowered/Compiled stage; cost_analysis() is a dict, or [dict] on older jax."""
  try:
    analysis = stage.cost_analysis()
  except (NotImplementedError, RuntimeError):  # a backend without cost analysis
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis["flops"]) if analysis and "flops" in analysis else None


def xla_memory(compiled) -> dict:
  """XLA's static buffer sizes of a compiled program (per device): arguments and temporaries."""
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):
    stats = None
  names = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
  return {f"xla_{n.split('_size')[0]}_bytes": getattr(stats, n, None) for n in names}


def peak_memory(devices) -> tuple[Optional[int], str]:
  """(bytes, source): the devices' allocator peak, or the host's max RSS where devices report none."""
  stats = [d.memory_stats() for d in devices]
  peaks = [s["peak_bytes_in_use"] for s in stats if s and "peak_bytes_in_use" in s]
  if peaks:
    return int(max(peaks)), "device peak_bytes_in_use (process peak so far)"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host max RSS (no device stats)"


def time_calls(call: Callable[[], Any], steps: int, warmup: int) -> dict:
  """Times call() (which returns arrays) as TIMING_METHOD says."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(1e3 * (time.perf_counter() - start))
  start = time.perf_counter()
  for _ in range(steps):
    out = call()
  jax.block_until_ready(out)  # one stream executes in order: the last call ends after the others
  per_s = steps / (time.perf_counter() - start)
  return {"ms_median": statistics.median(times), "ms_min": min(times), "per_s": per_s}


def add_rates(entry: dict, ms: float, peak_tflops: Optional[float]) -> None:
  """Adds TFLOP/s (and its fraction of `peak_tflops`) to a timed entry that has XLA's FLOPs."""
  if entry.get("flops"):
    entry["tflops_per_s"] = entry["flops"] / (ms * 1e9)
    entry["fraction_of_peak"] = entry["tflops_per_s"] / peak_tflops if peak_tflops else None


def prepare_config(config, prior: str, dtype=None):
  """A checked copy of `config` with a prompt, the prior and its dtype set (bad values fail here)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.prompt = config.prompt or DEFAULT_PROMPT
    config.prior.model = prior
    config.prior.dtype = dtype or config.prior.dtype
  stable_diffusion.resolve_dtype(config.prior.dtype)
  config_check.check(config)
  return config


def _host_device():
  """The CPU device (None without one): the prior's float32 draft is made there, off the GPU's peak."""
  try:
    return jax.devices("cpu")[0]
  except RuntimeError:
    return None


def build(config, prior_name: str, seed: int = 0, dry: bool = False) -> Setup:
  """The prior (random spec or folder), prompt embeddings, scene and optimizer of a prepared config.

  The frozen params are kept on the host (numpy): each run places its own copy, as training holds one.
  """
  dtype = config.prior.dtype
  host = _host_device()
  with jax.default_device(host) if host else contextlib.nullcontext():
    if prior_name in random_init.SPECS:
      prior, params = random_init.build_random_prior(prior_name, seed, dtype, abstract=dry)
    elif os.path.isdir(prior_name):
      prior, params = stable_diffusion.load_prior(prior_name, dtype=dtype, local_files_only=True)
    else:
      raise ValueError(f"--prior={prior_name!r}: allowed: {', '.join(random_init.SPECS)} or a folder")
  frozen = {k: v for k, v in params.items() if k in ("unet", "vae")}  # the text encoder runs once, here
  if dry:
    length, dim = prior.tokenize([""]).shape[1], prior.unet.config.cross_attention_dim
    text = text_lib.TextEmbeddings(cond=jax.ShapeDtypeStruct((4, length, dim), jnp.float32),
                                   uncond=jax.ShapeDtypeStruct((length, dim), jnp.float32))
  else:
    text = jax.device_get(text_lib.embed_prompts(prior, params, config.prompt, config.negative_prompt,
                                                 config.prior.view_dependent,
                                                 config.prior.textureless_drop_words))
    frozen = jax.device_get(frozen)
  channels = prior.channels if config.prior.latent_render else 3
  return Setup(config, prior, frozen, text, field.make_scene(config, out_channels=channels),
               step_lib.make_optimizer(config), dry)


def _place(tree, mesh, dry):
  sharding = distributed.replicated(mesh)
  abstract = lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding)
  return jax.tree_util.tree_map(abstract, tree) if dry else distributed.replicate(tree, mesh)


def bench_step(setup: Setup, num_devices: int, steps: int, warmup: int, peak_tflops=None) -> dict:
  """The training step on the first `num_devices` devices at config.batch_per_device views each."""
  c = setup.config
  mesh = distributed.make_mesh(jax.devices()[:num_devices])
  state = step_lib.init_state(c, setup.scene, setup.optimizer, mesh)
  frozen, text = _place(setup.prior_params, mesh, setup.dry), _place(setup.text, mesh, setup.dry)
  train_step = step_lib.make_train_step(c, setup.scene, setup.prior, setup.optimizer, mesh)
  batch = c.batch_per_device * num_devices
  start = time.perf_counter()
  lowered = train_step.lower(state, frozen, text)
  out = {"devices": num_devices, "batch": batch, "flops_hlo": xla_flops(lowered)}
  if setup.dry:
    return out
  compiled = lowered.compile()
  out.update(compile_s=time.perf_counter() - start, flops=xla_flops(compiled), **xla_memory(compiled))
  carry = {"state": state}

  def call():
    carry["state"], metrics = compiled(carry["state"], frozen, text)
    return carry["state"], metrics

  t = time_calls(call, steps, warmup)
  memory, source = peak_memory(mesh.devices.flat)
  out.update(ms_per_step=t["ms_median"], ms_per_step_min=t["ms_min"], steps_per_s=t["per_s"],
             views_per_s=t["per_s"] * batch, peak_memory_bytes=memory, peak_memory_source=source)
  add_rates(out, out["ms_per_step"], peak_tflops)
  return out
