"""Trains the judge (shape + colour classifier) on fresh renders of the embedded world.

  python -m dreamfusion_jax.shapes.train_judge --steps 3000 --batch 32

Both heads see every shading mode except that the colour loss skips textureless renders (they have no
colour). Light pixel noise and blur make the judge tolerant of NeRF renders and diffusion samples,
which are softer and noisier than the sphere tracer's. A quarter of the backgrounds are plain white,
the background of the scored renders: trained on the prior's backgrounds alone (random colours pulled
towards grey), the judge named a true textureless sphere on white a torus (p(sphere) 0.21) and got the
shape of only half of the world's true objects in evaluate's views. The result is written in float16
to dreamfusion_jax/shapes/weights/judge/ with its held-out accuracy and its accuracy in those views.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from configs import base as base_config
from configs import shapes as shapes_config
from dreamfusion_jax.evaluate import r_precision
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.shapes import judge as judge_lib
from dreamfusion_jax.shapes import world


def augment(key: jax.Array, images: jax.Array) -> jax.Array:
  """Random 3x3 box blur (half the images) plus Gaussian pixel noise of std U(0, 0.05)."""
  blur_key, noise_key, std_key = jax.random.split(key, 3)
  b = images.shape[0]
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  n = images.shape[1]
  blurred = sum(padded[:, i:i + n, j:j + n] for i in range(3) for j in range(3)) / 9.0
  images = jnp.where(jax.random.bernoulli(blur_key, 0.5, (b, 1, 1, 1)), blurred, images)
  std = jax.random.uniform(std_key, (b, 1, 1, 1), maxval=0.05)
  return jnp.clip(images + std * jax.random.normal(noise_key, images.shape), 0.0, 1.0)


def losses(params, images, batch, model):
  """Cross-entropy of both heads; colour only where the render is not textureless."""
  logits = model.apply({"params": params}, images)
  shape_ce = optax.softmax_cross_entropy_with_integer_labels(logits["shape"], batch.scenes.shape)
  colour_ce = optax.softmax_cross_entropy_with_integer_labels(logits["colour"], batch.scenes.colour)
  coloured = (batch.scenes.mode != shading.TEXTURELESS).astype(jnp.float32)
  loss = shape_ce.mean() + (coloured * colour_ce).sum() / jnp.maximum(coloured.sum(), 1.0)
  accuracy = {
      "shape": jnp.mean(jnp.argmax(logits["shape"], -1) == batch.scenes.shape),
      "colour": jnp.sum(coloured * (jnp.argmax(logits["colour"], -1) == batch.scenes.colour))
                / jnp.maximum(coloured.sum(), 1.0)}
  return loss, accuracy


def make_step(model, optimizer, config, batch_size: int, supersample: int, white_backgrounds: float):
  def step(params, opt_state, key):
    data_key, aug_key = jax.random.split(key)
    batch = world.sample_batch(data_key, batch_size, config, judge_lib.RESOLUTION, supersample,
                               white_backgrounds)
    images = augment(aug_key, batch.images)
    (loss, acc), grads = jax.value_and_grad(losses, has_aux=True)(params, images, batch, model)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc
  return jax.jit(step)


def evaluate(params, model, config, key, num_batches: int = 8, batch_size: int = 64) -> dict:
  """Held-out accuracy of each head on clean renders (keys disjoint from training's)."""
  @jax.jit
  def acc(k):
    batch = world.sample_batch(k, batch_size, config, judge_lib.RESOLUTION)
    return losses(params, batch.images, batch, model)[1]
  results = [acc(jax.random.fold_in(key, i)) for i in range(num_batches)]
  return {k: float(np.mean([r[k] for r in results])) for k in results[0]}


def scoring_cameras(num_views: int = 8) -> camera.Cameras:
  """The views evaluate scores for configs/shapes.py: a turntable at its elevation and mean distance."""
  return r_precision.scoring_cameras(shapes_config.get_config(), num_views, judge_lib.RESOLUTION)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--steps", type=int, default=3000)
  parser.add_argument("--batch", type=int, default=32, help="a multiple of 8")
  parser.add_argument("--lr", type=float, default=2e-3)
  parser.add_argument("--supersample", type=int, default=1,
                      help="rays per pixel side of the training renders (aliased edges are 4x cheaper; "
                           "the blur augmentation covers the difference)")
  parser.add_argument("--white-backgrounds", type=float, default=0.25,
                      help="fraction of training renders on plain white, the scored renders' background")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=judge_lib.JUDGE_DIR)
  args = parser.parse_args()
  if args.batch < 8 or args.batch % 8:
    raise ValueError(f"--batch must be a positive multiple of 8, got {args.batch}")
  config = base_config.get_config()
  model = judge_lib.Judge()
  key = jax.random.PRNGKey(args.seed)
  params = model.init(key, jnp.zeros((1, judge_lib.RESOLUTION, judge_lib.RESOLUTION, 3)))["params"]
  optimizer = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, args.lr, 100, args.steps), 1e-4)
  opt_state = optimizer.init(params)
  step = make_step(model, optimizer, config, args.batch, args.supersample, args.white_backgrounds)
  start = time.time()
  bar = tqdm.tqdm(range(args.steps), mininterval=10.0)
  for i in bar:
    params, opt_state, loss, acc = step(params, opt_state, jax.random.fold_in(key, i + 1))
    if i % 50 == 0:
      bar.set_postfix(loss=f"{float(loss):.3f}", shape=f"{float(acc['shape']):.2f}",
                      colour=f"{float(acc['colour']):.2f}")
  held_out = evaluate(params, model, config, jax.random.PRNGKey(10_000 + args.seed))
  print(f"held-out accuracy: {held_out}")
  scoring = judge_lib.scoring_view_accuracy(params, scoring_cameras(), config.shading.ambient,
                                            config.shading.diffuse)
  print(f"accuracy on the true objects in the scored views: {scoring}")
  judge_lib.save(args.out, params, dict(steps=args.steps, batch=args.batch, seed=args.seed,
                                        white_backgrounds=args.white_backgrounds,
                                        widths=list(model.widths),
                                        wall_seconds=time.time() - start, accuracy=held_out,
                                        scoring_view_accuracy=scoring))


if __name__ == "__main__":
  main()
