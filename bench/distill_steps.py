"""Milliseconds per distillation step (SDS / SJC / ISM): jitted, warm, median over repeats.

Run:
  python bench/distill_steps.py                              # tiny latent prior (CPU-sized)
  python bench/distill_steps.py --spec sd21-base             # SD-2.1-base at 64x64 latents, fp32 + bf16 (GPU)
  python bench/distill_steps.py --spec sd21-base --dry       # no weights, no run: XLA's FLOPs per step
  python bench/distill_steps.py --spec sd21-base --from_rgb  # + the VAE encoder from a 64x64 render

A "step" is the distillation part of a training step: the loss and its gradient w.r.t. x for a batch of
renders, with randomly initialised weights (they cost what trained ones cost). x is in model space, or
with --from_rgb an RGB render that goes through prior.encode_image (bilinear to 512, VAE encoder) and
is differentiated back through it. Text embeddings are random (the text encoder runs outside the step).
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from dreamfusion_jax import config_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax.distill import LOSSES  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax.distill import image2d  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax.prior import random_init  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--spec", default="tiny-latent", choices=sorted(random_init.SPECS))
  p.add_argument("--dtypes", default=None, help="comma list; default float32 (tiny) or float32,bfloat16")
  p.add_argument("--methods", default="sds,sjc,ism")
  p.add_argument("--batch", type=int, default=1, help="views per step (per device in training)")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--from_rgb", action="store_true", help="start from an RGB render through the VAE encoder")
  p.add_argument("--render", type=int, default=64, help="render side for --from_rgb")
  p.add_argument("--dry", action="store_true", help="lower with abstract params and print FLOPs only")
  return p.parse_args()


def step_fn(config, prior, method, from_rgb):
  """(params, x, text, key, step) -> (∂loss/∂x, aux), jitted; x is RGB when from_rgb."""
  loss_fn = LOSSES[method]

  def loss(x, params, text, key, step):
    z = prior.encode_image(params, x) if from_rgb else x
    return loss_fn(config, prior, params, z, text, key, step)

  return jax.jit(lambda params, x, text, key, step: jax.grad(loss, has_aux=True)(x, params, text, key, step))


def flops(compiled_or_lowered):
  analysis = compiled_or_lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def bench_one(args, dtype, method, config):
  prior, params = random_init.build_random_prior(args.spec, dtype=dtype, abstract=args.dry)
  side = args.render if args.from_rgb else prior.sample_size
  shape = (args.batch, side, side, 3 if args.from_rgb else prior.channels)
  dim = prior.unet.config.cross_attention_dim
  text_shape = (args.batch, prior.tokenizer.model_max_length, dim)
  fn = step_fn(config, prior, method, args.from_rgb)
  label = f"{args.spec:10s} {dtype:8s} {method:3s} {'rgb+vae' if args.from_rgb else 'x':7s} B={args.batch}"
  if args.dry:
    spec = lambda s: jax.ShapeDtypeStruct(s, jnp.float32)
    lowered = fn.lower(params, spec(shape), (spec(text_shape), spec(text_shape)), jax.random.PRNGKey(0), 0)
    print(f"{label}: {flops(lowered) / 1e12:.3f} TFLOP per step (XLA cost analysis, not run)", flush=True)
    return
  k_x, k_c, k_u = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.uniform(k_x, shape) if args.from_rgb else jax.random.normal(k_x, shape)
  text = (jax.random.normal(k_c, text_shape), jax.random.normal(k_u, text_shape))
  start = time.perf_counter()
  compiled = fn.lower(params, x, text, jax.random.PRNGKey(0), 0).compile()
  jax.block_until_ready(compiled(params, x, text, jax.random.PRNGKey(0), 0))
  warmup = time.perf_counter() - start
  times = []
  for i in range(args.repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, x, text, jax.random.PRNGKey(i + 1), i + 1))
    times.append(time.perf_counter() - start)
  print(f"{label}: {1e3 * statistics.median(times):9.2f} ms per step (median of {args.repeats}; "
        f"compile+first {warmup:.1f} s; {flops(compiled) / 1e9:.3g} GFLOP)", flush=True)


def main():
  args = parse_args()
  default = "float32" if args.spec.startswith("tiny") else "float32,bfloat16"
  dtypes = (args.dtypes or default).split(",")
  methods = args.methods.split(",")
  unknown = [m for m in methods if m not in LOSSES]
  if unknown:
    raise ValueError(f"--methods: unknown {unknown}; allowed: {', '.join(LOSSES)}")
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()})")
  for dtype in dtypes:
    for method in methods:
      config = image2d.configure(config_files.load(), "a DSLR photo of a corgi", method, 15000)
      bench_one(args, dtype, method, config)


if __name__ == "__main__":
  main()
