"""The speed benchmark at toy scale: its FLOP accounting, its rates, and the PyTorch reference's sizes.

No timing thresholds: only that times are positive and that every derived number follows from them.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import pytest

from dreamfusion_jax import bench
from dreamfusion_jax.prior import random_init

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))
import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position

PEAK = 2.0  # TFLOP/s: any value; the derived fractions must follow from it


@pytest.fixture(scope="module")
def report():
  """One in-process run: the tiny latent prior, tiny NeRF, 1 device, 2 timed steps."""
  out = bench.run(tiny.get_config(), prior="tiny-latent", dtype="float32", steps=2, warmup=1,
                  devices=[1], peak_tflops=PEAK)
  return json.loads(json.dumps(out))  # what --json writes must hold everything


def test_unet_piece_flops_equal_a_direct_unet_call(report):
  prior, params = random_init.build_random_prior("tiny-latent")
  batch = 2 * report["batch_per_device"]  # classifier-free guidance: [cond; uncond] in one call
  side, dim = prior.sample_size, prior.unet.config.cross_attention_dim
  fn = jax.jit(lambda p, x, t, e: prior.unet.apply({"params": p}, x, t, e).sample)
  direct = bench.xla_flops(fn.lower(
      params["unet"], jnp.zeros((batch, prior.channels, side, side)), jnp.zeros((batch,), jnp.int32),
      jnp.zeros((batch, prior.tokenize([""]).shape[1], dim))).compile())
  unet = report["pieces"]["unet"]["flops"]
  # The piece adds only the guidance combination (3 FLOPs per latent element) around the call.
  assert unet == pytest.approx(direct, rel=1e-3)
  assert report["pieces"]["distill"]["flops"] >= unet  # SDS makes exactly one guided call


def test_pieces_sum_to_the_step(report):
  """render + encode + distill + update account for the step's FLOPs.

  Not exactly: the step also samples cameras, gathers text rows, takes the gradient norm and selects
  on finiteness, and XLA simplifies differently inside one program than across five.
  """
  total = sum(report["pieces"][name]["flops"] for name in bench.SUMMED)
  step = report["step"]["flops"]
  assert total == pytest.approx(step, rel=0.05)
  assert report["pieces_sum"]["flops_vs_step"] == pytest.approx(total / step)
  assert report["pieces"]["update"]["flops"] < 1e-2 * step  # Adam on a small MLP is negligible


def test_rates_follow_from_times_and_flops(report):
  step = report["step"]
  assert step["ms_per_step"] > 0 and step["steps_per_s"] > 0 and step["compile_s"] > 0
  assert step["ms_per_step_min"] <= step["ms_per_step"]
  assert step["views_per_s"] == pytest.approx(step["steps_per_s"] * step["batch"])
  assert step["tflops_per_s"] == pytest.approx(step["flops"] / (step["ms_per_step"] * 1e9))
  assert step["fraction_of_peak"] == pytest.approx(step["tflops_per_s"] / PEAK)
  assert step["peak_memory_bytes"] > 0
  for name in bench.PIECES:
    piece = report["pieces"][name]
    assert piece["ms"] > 0 and piece["flops"] > 0
    assert piece["tflops_per_s"] == pytest.approx(piece["flops"] / (piece["ms"] * 1e9))
  unet = report["pieces"]["unet"]
  assert unet["floor_ms"] == pytest.approx(unet["flops"] / (PEAK * 1e12) * 1e3)


def test_report_describes_the_run(report):
  assert report["platform"] == jax.default_backend()
  assert report["config"]["prior"]["model"] == "tiny-latent"
  assert report["config"]["prior"]["dtype"] == "float32"
  assert [s["devices"] for s in report["scaling"]] == [1]
  assert report["flops_caveats"] == []  # no loops in an unchunked SDS step: the counts are whole
  text = bench.format_report(report)
  assert f"{report['step']['ms_per_step']:9.2f}" in text
  if report["platform"] == "cpu":
    assert "correctness only" in text


def test_dry_flops_of_the_lowered_step_scale_with_devices():
  """The lowered (global) HLO of k devices at a fixed per-device batch does k times the work."""
  assert jax.device_count() >= 2, "tests/conftest.py sets 8 fake CPU devices"
  config = bench.prepare_config(tiny.get_config(), "tiny-latent", "float32")
  setup = bench.build(config, "tiny-latent", dry=True)
  one, two = (bench.bench_step(setup, k, steps=1, warmup=0) for k in (1, 2))
  assert two["batch"] == 2 * one["batch"]
  assert two["flops_hlo"] == pytest.approx(2 * one["flops_hlo"], rel=0.01)
  assert "ms_per_step" not in one  # nothing ran


def test_bad_arguments_fail_before_building():
  config = tiny.get_config()
  with pytest.raises(ValueError, match="--devices"):
    bench.run(config, prior="tiny-latent", devices=[jax.device_count() + 1])
  with pytest.raises(ValueError, match="--steps"):
    bench.run(config, prior="tiny-latent", steps=0, devices=[1])
  with pytest.raises(ValueError, match="--prior"):
    bench.run(config, prior="no-such-spec", devices=[1], dtype="float32")
  with pytest.raises(ValueError, match="dtype"):
    bench.run(config, prior="tiny-latent", devices=[1], dtype="float16")


def test_xla_flops_reads_every_cost_analysis_shape():
  class Stage:
    def __init__(self, analysis):
      self.analysis = analysis

    def cost_analysis(self):
      if isinstance(self.analysis, Exception):
        raise self.analysis
      return self.analysis

  assert bench.xla_flops(Stage({"flops": 3.0})) == 3.0
  assert bench.xla_flops(Stage([{"flops": 5.0}])) == 5.0  # older jax: one dict per program
  assert bench.xla_flops(Stage([])) is None
  assert bench.xla_flops(Stage(NotImplementedError())) is None


def test_torch_reference_benches_the_same_sizes():
  ref = bench.load_torch_reference()  # no torch needed to import it
  for ours, spec in (((ref.SD21_BASE_UNET, ref.SD21_BASE_VAE), random_init.SD21_BASE),
                     ((ref.TINY_UNET, ref.TINY_VAE), random_init.TINY_LATENT)):
    for theirs, key in zip(ours, ("unet", "vae")):
      assert {k: spec[key][k] for k in theirs} == theirs
  config = tiny.get_config()
  args = ref.parse_args(ref.argv_from_config(config, "tiny-latent", 3, 1, "out.json"))
  assert args.tiny and (args.steps, args.warmup, args.json) == (3, 1, "out.json")
  assert args.batch == config.batch_per_device
  assert (args.resolution, args.num_samples, args.num_importance) == (
      config.render.resolution, config.render.num_samples, config.render.num_importance)
  assert (args.width, args.num_blocks, args.num_freqs, args.background_width) == (
      config.nerf.width, config.nerf.num_blocks, config.nerf.num_freqs, config.nerf.background_width)
  assert (args.guidance_scale, args.lr, args.eps, args.grad_clip) == (
      config.sds.guidance_scale, config.optim.lr, config.optim.eps, config.optim.grad_clip)
  assert not ref.parse_args(ref.argv_from_config(config, "sd21-base", 3, 1, "o.json")).tiny
  with pytest.raises(ValueError, match="no PyTorch counterpart"):
    ref.argv_from_config(config, "tiny-pixel", 3, 1, "o.json")
  with config.unlocked():
    config.distill = "ism"
  with pytest.raises(ValueError, match="distill=sds"):
    ref.argv_from_config(config, "tiny-latent", 3, 1, "o.json")
