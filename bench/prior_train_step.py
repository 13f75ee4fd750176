"""Milliseconds per training step of the embedded prior (shapes.train_prior), and what its parts take.

Run:
  python bench/prior_train_step.py                       # batch 24, the text-only prior's spec
  python bench/prior_train_step.py --batch 96 --camera_dim 32   # launch/gpu_prior.sh's camera fine-tune
  python bench/prior_train_step.py --parts render --unroll 8,64  # the world's tracer, two loop unrolls

Three jitted programs, each compiled once, then timed warm as bench.measure.time_calls does (the median
of calls each waited for, and the rate of calls issued back to back):
  render  world.sample_batch: a batch of fresh sphere-traced, captioned renders (the step's data);
  grad    the diffusion loss and its gradient w.r.t. the prior's parameters on a fixed batch of images;
  step    make_train_step's whole step: render, loss and gradient, AdamW, EMA (the state donated).
Each line gives the compile time, XLA's FLOP count and the rate it ran at; the last line the parts'
shares of the step, so a step far slower than its parts (or a rate far below the chip's) shows where
the time goes. Weights are random (they cost what trained ones cost). XLA's cost analysis counts a
loop's body once: the tracer's FLOPs are those of one pass (TRACE_UNROLL march steps), not 64 steps.

On an H200 (jax 0.11, in gVisor), launch/gpu_prior.sh's training made 146 steps of batch 96 in 5.5
minutes (~2 s a step), while at batch 96 with --camera_dim 32 `render` ran in 1.7 ms (a 131 s compile)
and `grad` in 16.5 ms (6.8 TFLOP/s; a 39 s compile). The difference was not the step but where it ran:
train_prior started from loaded weights, which diffusers' from_pretrained had committed to the host
CPU, so its whole step ran on the host's cores; these random weights were on the chip. load_prior now
returns them uncommitted on the default device (prior.checkpoint.on_default_device).
`launch/gpu_prior.sh diagnose OUT_DIR` runs this and then the loop, to check it there: see
docs/benchmark.md, "The prior continued on an H200".
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from dreamfusion_jax.bench import measure  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax.shapes import prior_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax.shapes import train_prior  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax.shapes import world  # pylint: disable=g-import-not-at-top,wrong-import-position

PARTS = ("render", "grad", "step")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=24, help="images per step (a multiple of the shape weights' sum)")
  p.add_argument("--shape_weights", default="1,1,1,1,2,2,2,2",
                 help="each shape's share of a batch, as train_prior --shape-weights")
  p.add_argument("--camera_dim", type=int, default=0, help="> 0: a camera-conditioned prior")
  p.add_argument("--channels", default=",".join(map(str, prior_model.PriorSpec.channels)),
                 help="the UNet's block widths (train_prior --channels; default the shipped prior's)")
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
  p.add_argument("--unroll", default=str(world.TRACE_UNROLL),
                 help="comma list of the tracer's march steps per loop pass (world.TRACE_UNROLL) for render")
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  parts = args.parts.split(",")
  if [q for q in parts if q not in PARTS]:
    p.error(f"--parts: {args.parts!r}; allowed: {', '.join(PARTS)}")
  args.parts = parts
  try:
    args.shape_weights = tuple(int(w) for w in args.shape_weights.split(","))
    args.unroll = tuple(int(u) for u in args.unroll.split(","))
    args.channels = tuple(int(c) for c in args.channels.split(","))
    world.shape_counts(args.batch, args.shape_weights)
  except ValueError as e:
    p.error(f"--batch / --shape_weights / --unroll / --channels: {e}")
  if args.repeats < 1 or min(args.unroll) < 1:
    p.error("--repeats and --unroll must be >= 1")
  return args


def timed(label: str, fn, args: tuple, repeats: int, donated: bool = False) -> dict:
  """Compiles fn for args and times it (bench.measure.time_calls); prints and returns the numbers.

  donated: fn's first argument is a state it donates and returns first (the train step): each call
  takes the previous call's state.
  """
  start = time.perf_counter()
  compiled = jax.jit(fn, donate_argnums=0 if donated else ()).lower(*args).compile()
  compile_s = time.perf_counter() - start
  current = list(args)

  def call():
    out = compiled(*current)
    if donated:
      current[0] = out[0]
    return out

  times = measure.time_calls(call, repeats, warmup=1)
  flops = measure.xla_flops(compiled)
  ms, gflop = times["ms_median"], (flops or float("nan")) / 1e9
  print(f"{label:34s} {ms:9.2f} ms (median of {repeats}; back to back {times['per_s']:.3g}/s; "
        f"compile {compile_s:.1f} s; {gflop:.3g} GFLOP, {gflop / ms:.3g} TFLOP/s)", flush=True)
  return {"ms": ms, "per_s": times["per_s"], "gflop": gflop, "compile_s": compile_s}


def main(argv=None) -> dict:
  """Runs the parts asked for; returns {part: {"ms", "gflop", "compile_s"}} (render: the last unroll)."""
  args = parse_args(argv)
  config = train_prior.CAMERA_CONFIGS["shapes"]()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"batch {args.batch}, camera_dim {args.camera_dim}", flush=True)
  key = jax.random.PRNGKey(0)
  sample = lambda k: world.sample_batch(k, args.batch, config, prior_model.RESOLUTION,
                                        shape_weights=args.shape_weights)
  out = {}
  default_unroll = world.TRACE_UNROLL
  if "render" in args.parts:
    for unroll in args.unroll:
      world.TRACE_UNROLL = unroll  # read when the tracer is traced, i.e. at this compile
      out["render"] = timed(f"render (unroll {unroll})", lambda k: sample(k).images, (key,), args.repeats)
    world.TRACE_UNROLL = default_unroll
  if not {"grad", "step"} & set(args.parts):
    return out
  overrides = {"channels": args.channels}
  if args.camera_dim:
    overrides["camera_dim"] = args.camera_dim
  with tempfile.TemporaryDirectory() as workdir:  # setup() learns the tokenizer there; nothing is kept
    spec, text, unet, token_table = train_prior.setup(workdir, overrides)
  params = prior_model.init_params(jax.random.PRNGKey(0), spec, text, unet)
  print(f"text encoder {prior_model.num_params(params['text']):,} params, "
        f"unet {prior_model.num_params(params['unet']):,} params", flush=True)
  if "grad" in args.parts:
    batch = jax.jit(sample)(key)
    camera = batch.camera if args.camera_dim else None
    alphas_cumprod = jnp.asarray(prior_model.alphas_cumprod())
    grad = jax.value_and_grad(lambda p, images, ids, cam: train_prior.diffusion_loss(
        p, text, unet, images, ids, key, alphas_cumprod, prior_model.NUM_TRAIN_TIMESTEPS, cam))
    out["grad"] = timed("grad (loss and gradient)", grad,
                        (params, batch.images, token_table[batch.captions], camera), args.repeats)
  if "step" in args.parts:
    optimizer = train_prior.make_optimizer(3e-4, 100)
    state = train_prior.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                   ema=jax.tree_util.tree_map(jnp.copy, params),
                                   opt_state=optimizer.init(params))
    step_fn = train_prior.make_train_step(text, unet, optimizer, config, args.batch, args.shape_weights)
    out["step"] = timed("step (render, grad, AdamW, EMA)", step_fn.__wrapped__,
                        (state, key, token_table, jnp.float32(1.0)), args.repeats, donated=True)
    step_ms = out["step"]["ms"]
    print(f"{1e3 * args.batch / step_ms:.0f} images/s; " + ", ".join(
        f"{part} {out[part]['ms'] / step_ms:.0%} of the step" for part in ("render", "grad") if part in out),
        flush=True)
  return out


if __name__ == "__main__":
  main()
