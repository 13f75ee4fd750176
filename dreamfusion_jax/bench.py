r"""Speed of the full training step at Stable Diffusion scale, and of each of its pieces.

  python -m dreamfusion_jax.bench --config configs/base.py --prior sd21-base --steps 20 --json out.json
  python -m dreamfusion_jax.bench --config configs/tiny.py --prior tiny-latent --dtype float32 --steps 2
  python -m dreamfusion_jax.bench ... --devices 1,2,4,8    # fixed per-device batch on the first k devices
  python -m dreamfusion_jax.bench ... --dry                # no run: XLA's FLOPs of the lowered programs
  python -m dreamfusion_jax.bench ... --torch_reference    # + bench/torch_reference.py, JAX/PyTorch ratio

`--prior` is a spec of `prior.random_init` (sd21-base is SD-2.1-base's real architecture with random
weights, which cost what trained ones cost) or a diffusers-layout folder. `--config.x=y` overrides the
config as for training. The step is `step.make_train_step`, the code training runs, on a mesh of the
first k devices (one process). Then each piece is jitted alone on one device at one device's shapes:
render (forward + backward to the NeRF params, with a dummy cotangent on the image and the regularizers),
encode (VAE encoder forward + backward to the image), distill (the method's loss gradient w.r.t. the
model-space render; it holds every UNet call of the method), unet (one guided call, forward only, CFG
batch 2B: SDS makes exactly one per step) and update (clip + Adam).

Timing: after compilation and `--warmup` calls, `--steps` calls each blocked on (median ms), then
`--steps` calls with one sync at the end (steps/s, which also hides host dispatch). FLOPs: XLA's cost
analysis of the compiled program, i.e. the per-device program under SPMD (`flops_hlo`: of the lowered,
global, unoptimised HLO). TFLOP/s = per-device FLOPs / median time, against `--peak_tflops` (default
989, the dense bf16 tensor-core peak of an H100 / H200 SXM, when the device kind names one). XLA
counts a loop's body once, so chunked renders and ISM's inversion loop undercount; the report says so.

GPU machines without diffusers (or with transformers 5) need diffusers 0.39.0, transformers 4.57.6,
huggingface-hub 0.36.2, tokenizers 0.22.2, ml_collections 1.1.0 and importlib_metadata first on
PYTHONPATH, e.g. as wheels carried in `.whl/` (see the device README).
"""

import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from dreamfusion_jax import config_check
from dreamfusion_jax import distill
from dreamfusion_jax import distributed
from dreamfusion_jax import step as step_lib
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import regularizers
from dreamfusion_jax.nerf import render
from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_REFERENCE = os.path.join(ROOT, "bench", "torch_reference.py")
DEFAULT_PROMPT = "a DSLR photo of a corgi"
# Dense bf16 tensor-core peaks (NVIDIA H100 / H200 SXM datasheets: 1979 TFLOP/s with 2:4 sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}
PIECES = ("render", "encode", "distill", "unet", "update")
SUMMED = ("render", "encode", "distill", "update")  # unet is inside distill
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
                                                 config.prior.view_dependent))
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
  _add_rates(out, out["ms_per_step"], peak_tflops)
  return out


def _to_model_space(setup: Setup, prior_params, rgb):
  if setup.config.prior.latent_render:
    return setup.prior.latents_from_render(rgb)
  return setup.prior.encode_image(prior_params, rgb)


def piece_programs(setup: Setup, seed: int = 0) -> dict:
  """name -> (fn, args): each piece of the step alone, at one device's shapes (batch_per_device)."""
  c, prior, scene, params = setup.config, setup.prior, setup.scene, setup.prior_params
  batch = c.batch_per_device
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 16))
  cams, modes = step_lib.sample_batch(c, next(keys), 0, batch)
  nerf = field.init_params(scene, next(keys))
  opt_state = setup.optimizer.init(nerf)
  rgb = jax.eval_shape(lambda p: render.render_views(scene, p, cams, next(keys), c, modes).rgb, nerf)
  rgb = jax.random.uniform(next(keys), rgb.shape)
  x = jax.eval_shape(lambda p, im: _to_model_space(setup, p, im), params, rgb)
  x = jax.random.normal(next(keys), x.shape)
  text = setup.text
  if setup.dry:  # concrete stand-ins of the right shapes (the pieces' inputs other than params are real)
    text = jax.tree_util.tree_map(lambda s: jax.random.normal(next(keys), s.shape), text)
  cond, uncond = text_lib.select(text, cams.view, cams.azimuth, c.prior.view_interpolate)
  t = jnp.full((batch,), prior.num_train_timesteps // 2, jnp.int32)
  guidance = c[c.distill].guidance_scale

  def render_grad(nerf, cams, modes, key, cotangent):
    def loss(p):
      out = render.render_views(scene, p, cams, key, c, modes, train=True)
      return (jnp.sum(cotangent * out.rgb) + regularizers.orientation_loss(out)
              + regularizers.opacity_loss(out))
    return jax.grad(loss)(nerf)

  def encode_grad(params, rgb, cotangent):
    _, vjp = jax.vjp(lambda im: _to_model_space(setup, params, im), rgb)
    return vjp(cotangent)[0]

  def distill_grad(params, x, cond, uncond, key, step):
    loss_fn = distill.LOSSES[c.distill]
    return jax.grad(lambda z: loss_fn(c, prior, params, z, (cond, uncond), key, step)[0])(x)

  def unet(params, x_t, t, cond, uncond):
    return prior.guided_noise(params, x_t, t, cond, uncond, guidance)

  def update(grads, opt_state, nerf):
    updates, opt_state = setup.optimizer.update(grads, opt_state, nerf)
    return optax.apply_updates(nerf, updates), opt_state

  grads = jax.tree_util.tree_map(lambda p: 1e-3 * jnp.ones_like(p), nerf)
  return {
      "render": (render_grad, (nerf, cams, modes, next(keys), jnp.ones_like(rgb))),
      "encode": (encode_grad, (params, rgb, jnp.ones_like(x))),
      "distill": (distill_grad, (params, x, cond, uncond, next(keys), jnp.int32(0))),
      "unet": (unet, (params, x, t, cond, uncond)),
      "update": (update, (grads, opt_state, nerf)),
  }


def bench_pieces(setup: Setup, steps: int, warmup: int, peak_tflops: Optional[float]) -> dict:
  """Compiles and times each of piece_programs on the default device."""
  if not setup.dry:
    setup = dataclasses.replace(setup, prior_params=jax.device_put(setup.prior_params))
  out = {}
  for name, (fn, args) in piece_programs(setup).items():
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    out[name] = {"flops_hlo": xla_flops(lowered)}
    if setup.dry:
      continue
    compiled = lowered.compile()
    t = time_calls(lambda compiled=compiled, args=args: compiled(*args), steps, warmup)
    out[name].update(compile_s=time.perf_counter() - start, flops=xla_flops(compiled),
                     ms=t["ms_median"], ms_min=t["ms_min"], calls_per_s=t["per_s"])
    _add_rates(out[name], out[name]["ms"], peak_tflops)
  if peak_tflops and out["unet"].get("flops"):
    out["unet"]["floor_ms"] = out["unet"]["flops"] / (peak_tflops * 1e9)
  return out


def _add_rates(entry: dict, ms: float, peak_tflops: Optional[float]) -> None:
  if entry.get("flops"):
    entry["tflops_per_s"] = entry["flops"] / (ms * 1e9)
    entry["fraction_of_peak"] = entry["tflops_per_s"] / peak_tflops if peak_tflops else None


def _sum_pieces(pieces: dict, step: dict) -> dict:
  """Sums of the pieces (unet is inside distill) and their ratio to a 1-device step."""
  out = {}
  for key in ("flops", "flops_hlo", "ms"):
    values = [pieces[n].get(key) for n in SUMMED]
    if all(v is not None for v in values):
      out[key] = float(sum(values))
  if step["devices"] == 1:
    for key, step_key in (("flops", "flops"), ("flops_hlo", "flops_hlo"), ("ms", "ms_per_step")):
      if out.get(key) and step.get(step_key):
        out[f"{key}_vs_step"] = out[key] / step[step_key]
  return out


def _flops_caveats(config) -> list:
  """Where XLA's count is low: HloCostAnalysis counts a loop's body once, whatever its trip count."""
  out = []
  if int(config.render.get("chunk", 0)) > 0:
    out.append("render.chunk > 0: the chunk loop's body is counted once, so render FLOPs are low")
  if config.distill == "ism":
    out.append("ism: the DDIM-inversion loop's body is counted once, so distill FLOPs are low")
  return out


def run(config, prior: str = "sd21-base", dtype: Optional[str] = None, steps: int = 20,
        warmup: int = 3, devices: Optional[list] = None, peak_tflops: Optional[float] = None,
        split: bool = True, dry: bool = False, seed: int = 0, overrides=()) -> dict:
  """Benchmarks the training step (one entry per device count in `devices`) and its pieces → report.

  Bad arguments raise ValueError before anything is built.
  """
  available = jax.device_count()
  devices = sorted(set(devices or [available]))
  if any(not 1 <= k <= available for k in devices):
    raise ValueError(f"--devices={devices}: each count must be in [1, {available}] (devices here)")
  if steps < 1 or warmup < 0:
    raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps}, {warmup}")
  if prior not in random_init.SPECS and not os.path.isdir(prior):
    raise ValueError(f"--prior={prior!r}: allowed: {', '.join(random_init.SPECS)} or a folder")
  config = prepare_config(config, prior, dtype)
  kind = jax.devices()[0].device_kind
  peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in kind.upper()), None)
  setup = build(config, prior, seed, dry)
  report = {
      "device_kind": kind, "platform": jax.default_backend(), "devices_available": available,
      "jax_version": jax.__version__, "prior": prior, "dtype": config.prior.dtype,
      "distill": config.distill, "batch_per_device": config.batch_per_device,
      "config_overrides": list(overrides), "config": json.loads(config.to_json_best_effort()),
      "timing_method": TIMING_METHOD, "steps": steps, "warmup": warmup, "dry": dry,
      "peak_tflops": peak, "scaling": [], "flops_caveats": _flops_caveats(config),
  }
  for k in devices:
    report["scaling"].append(bench_step(setup, k, steps, warmup, peak))
  report["step"] = report["scaling"][-1]
  if split:
    report["pieces"] = bench_pieces(setup, steps, warmup, peak)
    report["pieces_sum"] = _sum_pieces(report["pieces"], report["scaling"][0])
  return report


def load_torch_reference():
  """bench/torch_reference.py as a module (it imports torch only when its steps run)."""
  spec = importlib.util.spec_from_file_location("torch_reference", TORCH_REFERENCE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_torch_reference(config, prior, steps, warmup, python=sys.executable, extra=()) -> dict:
  """Runs bench/torch_reference.py in a subprocess (before JAX takes the GPU) → its JSON report."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "torch.json")
    argv = load_torch_reference().argv_from_config(config, prior, steps, warmup, path)
    cmd = [python, TORCH_REFERENCE] + argv + list(extra)
    print("PyTorch reference:", " ".join(cmd), flush=True)
    try:
      subprocess.run(cmd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:  # the JAX numbers are still worth having
      print(f"PyTorch reference failed: {e}", flush=True)
      return {"error": str(e)}
    with open(path) as f:
      return json.load(f)


# Table columns: (title, report key, format, scale).
_STEP_COLUMNS = (("devices", "devices", "7d", 1), ("batch", "batch", "5d", 1),
                 ("compile s", "compile_s", "9.1f", 1), ("ms/step", "ms_per_step", "9.2f", 1),
                 ("steps/s", "steps_per_s", "8.2f", 1), ("views/s", "views_per_s", "8.2f", 1),
                 ("GFLOP/dev", "flops", "10.3f", 1e-9), ("TFLOP/s", "tflops_per_s", "8.2f", 1),
                 ("of peak", "fraction_of_peak", "7.1%", 1), ("peak GiB", "peak_memory_bytes", "8.2f", 2**-30),
                 ("temp GiB", "xla_temp_bytes", "8.2f", 2**-30))
_PIECE_COLUMNS = (("ms", "ms", "9.2f", 1), ("GFLOP", "flops", "10.3f", 1e-9),
                  ("TFLOP/s", "tflops_per_s", "8.2f", 1), ("of peak", "fraction_of_peak", "7.1%", 1))
_PIECE_LABELS = {"render": "render (fwd+bwd)", "encode": "encode (fwd+bwd)", "distill": "distill (grad x)",
                 "unet": "  unet (guided, 2B)", "update": "update (optimizer)"}


def _fmt(value, spec, scale=1):
  """value * scale formatted with `spec`, or "n/a" right-aligned to the spec's width."""
  if value is None:
    return format("n/a", ">" + re.match(r"\d*", spec).group())
  return format(value * scale, spec)


def _row(entry: dict, columns) -> str:
  entry = dict(entry, flops=entry.get("flops", entry.get("flops_hlo")))  # dry: the lowered count
  return " ".join(_fmt(entry.get(key), spec, scale) for _, key, spec, scale in columns)


def _header(columns) -> str:
  return " ".join(format(title, ">" + re.match(r"\d*", spec).group()) for title, _, spec, _ in columns)


def format_report(report: dict) -> str:
  """The human-readable table of a report."""
  timing = ("dry: nothing run; FLOPs from the lowered HLO (whole step, all devices)" if report["dry"] else
            f"{report['timing_method']}; warm-up {report['warmup']}, N = {report['steps']}")
  lines = [f"dreamfusion_jax.bench: {report['device_kind']} ({report['platform']}) x"
           f"{report['devices_available']}, jax {report['jax_version']}, prior {report['prior']} "
           f"{report['dtype']}, {report['distill']}, {report['batch_per_device']} view(s)/device",
           f"timing: {timing}", f"peak: {_fmt(report['peak_tflops'], '.0f')} TFLOP/s per device"]
  lines += [f"FLOPs caveat: {c}" for c in report["flops_caveats"]]
  if report["platform"] == "cpu":
    lines.append("CPU: fake devices share the host's cores, so device scaling shows correctness only.")
  lines += [_header(_STEP_COLUMNS)] + [_row(s, _STEP_COLUMNS) for s in report["scaling"]]
  if report["step"].get("peak_memory_source"):
    lines.append(f"memory: peak = {report['step']['peak_memory_source']}; temp = XLA's temporary buffers "
                 "of the step (per device, static)")
  pieces = report.get("pieces")
  if pieces:
    lines.append(f"{'piece, 1 device':<21} " + _header(_PIECE_COLUMNS))
    lines += [f"{_PIECE_LABELS[n]:<21} " + _row(pieces[n], _PIECE_COLUMNS) for n in PIECES]
    total = report["pieces_sum"]
    ratio = total.get("flops_vs_step", total.get("flops_hlo_vs_step"))
    lines.append(f"{'sum (unet in distill)':<21} " + _row(total, _PIECE_COLUMNS[:2]) +
                 f"   vs the 1-device step: FLOPs x{_fmt(ratio, '.3f')}, ms x{_fmt(total.get('ms_vs_step'), '.2f')}")
    if pieces["unet"].get("floor_ms"):
      lines.append(f"unet: {pieces['unet']['ms']:.2f} ms vs its FLOP floor {pieces['unet']['floor_ms']:.2f} ms "
                   f"at {report['peak_tflops']:.0f} TFLOP/s")
  ref = report.get("torch_reference")
  if ref and "step" in ref:
    lines.append(f"PyTorch reference ({ref['dtype']}, batch {ref['batch']}, {ref['device_kind']}): "
                 f"{ref['step']['ms_per_step']:.2f} ms/step, {ref['step']['steps_per_s']:.2f} steps/s")
    if ref.get("jax_over_torch_ms"):
      lines.append(f"JAX/PyTorch ms per step (1 device): {ref['jax_over_torch_ms']:.3f} "
                   f"(JAX is {1 / ref['jax_over_torch_ms']:.2f}x the PyTorch speed)")
  elif ref:
    lines.append(f"PyTorch reference failed: {ref['error']}")
  return "\n".join(lines)


def _compare(report: dict, ref: dict) -> dict:
  """The PyTorch report with the JAX/PyTorch ms ratio against the 1-device JAX step (when there is one)."""
  first = report["scaling"][0]
  if "step" in ref and first["devices"] == 1 and first.get("ms_per_step"):
    ref = dict(ref, jax_over_torch_ms=first["ms_per_step"] / ref["step"]["ms_per_step"])
  return ref


def _define_flags():
  """absl flags, defined only when run as a program (importing this module defines none)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", os.path.join(ROOT, "configs", "base.py"), "Config file.")
  flags.DEFINE_string("prior", "sd21-base", f"{', '.join(random_init.SPECS)} or a diffusers folder.")
  flags.DEFINE_string("dtype", None, "Prior dtype (float32 | bfloat16); default config.prior.dtype.")
  flags.DEFINE_integer("steps", 20, "Timed calls N (twice: synced each, then one sync).")
  flags.DEFINE_integer("warmup", 3, "Untimed calls after compilation.")
  flags.DEFINE_list("devices", None, "Device counts to run the step on (default: all devices).")
  flags.DEFINE_float("peak_tflops", None, "Per-device peak for the fraction (default: 989 on H100/H200).")
  flags.DEFINE_bool("split", True, "Also time the pieces of the step.")
  flags.DEFINE_bool("dry", False, "Lower only (abstract prior params): XLA FLOPs, nothing run.")
  flags.DEFINE_bool("torch_reference", False, "Also run bench/torch_reference.py and print the ratio.")
  flags.DEFINE_string("torch_python", sys.executable, "Python that runs the PyTorch reference.")
  flags.DEFINE_string("json", None, "Write the report here as JSON.")
  flags.DEFINE_integer("seed", 0, "Seed of the random prior weights.")
  return flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"Unexpected arguments: {argv[1:]}")
  f = _FLAGS
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  devices = [int(k) for k in f.devices] if f.devices else None
  config = prepare_config(f.config, f.prior, f.dtype)
  ref = None
  if f.torch_reference:  # first: JAX would otherwise hold most of the GPU's memory
    ref = run_torch_reference(config, f.prior, f.steps, f.warmup, f.torch_python)
  report = run(config, f.prior, f.dtype, f.steps, f.warmup, devices, f.peak_tflops, f.split, f.dry,
               f.seed, overrides)
  if ref is not None:
    report["torch_reference"] = _compare(report, ref)
  print(format_report(report), flush=True)
  if f.json:
    with open(f.json, "w") as out:
      json.dump(report, out, indent=2, sort_keys=True, default=str)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _FLAGS = _define_flags()
  app.run(main)
