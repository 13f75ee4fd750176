"""The benchmark's report: the step at each device count, its pieces, the PyTorch reference, the table.

`run` builds the report (a JSON-ready dict), `run_torch_reference` adds bench/torch_reference.py's
numbers from a subprocess, and `format_report` prints it as one table of the step and one of its pieces.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Optional

import jax

from dreamfusion_jax.bench import measure
from dreamfusion_jax.bench import pieces as pieces_lib
from dreamfusion_jax.prior import random_init

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
TORCH_REFERENCE = os.path.join(ROOT, "bench", "torch_reference.py")

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
  config = measure.prepare_config(config, prior, dtype)
  kind = jax.devices()[0].device_kind
  peak = peak_tflops or next((v for k, v in measure.PEAK_TFLOPS.items() if k in kind.upper()), None)
  setup = measure.build(config, prior, seed, dry)
  report = {
      "device_kind": kind, "platform": jax.default_backend(), "devices_available": available,
      "jax_version": jax.__version__, "prior": prior, "dtype": config.prior.dtype,
      "distill": config.distill, "batch_per_device": config.batch_per_device,
      "config_overrides": list(overrides), "config": json.loads(config.to_json_best_effort()),
      "timing_method": measure.TIMING_METHOD, "steps": steps, "warmup": warmup, "dry": dry,
      "peak_tflops": peak, "scaling": [], "flops_caveats": pieces_lib.flops_caveats(config),
  }
  for k in devices:
    report["scaling"].append(measure.bench_step(setup, k, steps, warmup, peak))
  report["step"] = report["scaling"][-1]
  if split:
    report["pieces"] = pieces_lib.bench_pieces(setup, steps, warmup, peak)
    report["pieces_sum"] = pieces_lib.sum_pieces(report["pieces"], report["scaling"][0])
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


def compare(report: dict, ref: dict) -> dict:
  """The PyTorch report with the JAX/PyTorch ms ratio against the 1-device JAX step (when there is one)."""
  first = report["scaling"][0]
  if "step" in ref and first["devices"] == 1 and first.get("ms_per_step"):
    ref = dict(ref, jax_over_torch_ms=first["ms_per_step"] / ref["step"]["ms_per_step"])
  return ref


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
    lines += [f"{_PIECE_LABELS[n]:<21} " + _row(pieces[n], _PIECE_COLUMNS) for n in pieces_lib.PIECES]
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
