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

import json
import os
import sys

from dreamfusion_jax.bench import measure
from dreamfusion_jax.bench import report as report_lib
from dreamfusion_jax.prior import random_init


def _define_flags():
  """absl flags, defined only when run as a program (importing this module defines none)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  default_config = os.path.join(report_lib.ROOT, "configs", "base.py")
  config_flags.DEFINE_config_file("config", default_config, "Config file.")
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
  config = measure.prepare_config(f.config, f.prior, f.dtype)
  ref = None
  if f.torch_reference:  # first: JAX would otherwise hold most of the GPU's memory
    ref = report_lib.run_torch_reference(config, f.prior, f.steps, f.warmup, f.torch_python)
  report = report_lib.run(config, f.prior, f.dtype, f.steps, f.warmup, devices, f.peak_tflops, f.split,
                          f.dry, f.seed, overrides)
  if ref is not None:
    report["torch_reference"] = report_lib.compare(report, ref)
  print(report_lib.format_report(report), flush=True)
  if f.json:
    with open(f.json, "w") as out:
      json.dump(report, out, indent=2, sort_keys=True, default=str)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _FLAGS = _define_flags()
  app.run(main)
