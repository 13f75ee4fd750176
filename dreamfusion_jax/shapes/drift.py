"""SDS started at the world's true object: does the config's step keep it there?

  python -m dreamfusion_jax.shapes.drift [--config configs/shapes.py] [--weights DIR]
      [--prompts "a purple table,a green cube"] [--fit-steps 250] [--every 100]
      [--set sds.t_max=0.3 --set num_steps=300 ...]

The 3D counterpart of shapes.fixed_point. For each prompt it first fits the NeRF to the true object
(`fit_to_truth`: the squared error of its albedo renders and opacity against the world's, through the
config's training cameras, no prior involved), then runs the config's own training step (the run's whole
schedule: warm-up, t anneal, ambient-only phase, regularizers) from those params, and prints the IoU
with the true shape (the benchmark's score) after the fit and every `--every` steps. A run from the
blob that ends far from the truth has two possible causes: the optimisation never reaches the truth,
or the truth is not where the step settles. Started at the truth, the second shows as the IoU falling
away from the fit's; the first cannot. docs/benchmark.md ("What limits it") has what it found on the
shipped prior.
"""

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import optax
import tqdm

from dreamfusion_jax import config_check
from dreamfusion_jax import config_files
from dreamfusion_jax import distributed
from dreamfusion_jax import step as step_lib
from dreamfusion_jax.evaluate import geometry
from dreamfusion_jax.export import mesh as mesh_lib
from dreamfusion_jax.export import run as export_run
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import errors
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import sdf
from dreamfusion_jax.shapes import world

FIT_VIEWS = 4  # true views per fitting step
FIT_LR = 5e-3  # Adam, cosine-decayed to a tenth over the fit


def fit_loss(scene, params, cams, key, config, true_rgb, true_coverage):
  """Mean squared error of the NeRF's albedo renders (white background) and opacity against the truth's."""
  modes = jnp.full(cams.focal.shape, shading.ALBEDO, jnp.int32)
  out = render.render_views(scene, params, cams, key, config, modes, train=False)
  return jnp.mean(jnp.square(out.rgb - true_rgb)) + jnp.mean(jnp.square(out.opacity - true_coverage))


def fit_to_truth(config, scene, prompt: str, steps: int, key, progress=lambda: None):
  """NeRF params fitted to `prompt`'s true object in `steps` Adam steps (no prior involved).

  Each step renders FIT_VIEWS views through the config's training cameras (camera.sample_views), the
  world's albedo render of the object on white and its coverage the targets (`fit_loss`). `progress()`
  is called after every step.
  """
  if steps < 1:
    raise ValueError(f"fit steps must be >= 1, got {steps}")
  init_key, step_key = jax.random.split(key)
  params = field.init_params(scene, init_key)
  optimizer = optax.adam(optax.cosine_decay_schedule(FIT_LR, steps, alpha=0.1))
  ambient, diffuse = float(config.shading.ambient), float(config.shading.diffuse)

  @jax.jit
  def fit_step(params, opt_state, key):
    cam_key, render_key = jax.random.split(key)
    cams = camera.sample_views(cam_key, FIT_VIEWS, config)
    rgb, coverage = world.render_prompt(prompt, cams, shading.ALBEDO, ambient, diffuse)
    loss_fn = functools.partial(fit_loss, scene, cams=cams, key=render_key, config=config,
                                true_rgb=rgb, true_coverage=coverage)
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for i in range(steps):
    params, opt_state = fit_step(params, opt_state, jax.random.fold_in(step_key, i))
    progress()
  return params


def true_shape_iou(scene, params, prompt: str, bound: float, resolution: int) -> float:
  """The benchmark's IoU (best over yaw, at the true size) of the field with the prompt's true shape; 0
  for a field that renders empty."""
  shape, _ = captions.parse_prompt(prompt)
  density_fn, _ = export_run.field_fns(scene, params)
  try:
    occupied = geometry.nerf_occupancy(density_fn, bound, resolution)
  except mesh_lib.EmptyFieldError:
    return 0.0
  return geometry.best_yaw_iou(occupied, jax.jit(lambda p: sdf.occupancy(shape, p)), bound)["iou"]


def drift(config, prior, prior_params, scene, params, every: int, score, progress=lambda: None) -> list:
  """[(step, score(params at step))] of the config's training run started from `params`, at step 0 and
  every `every` steps to config.num_steps (a fresh optimizer and the run's own schedule from step 0);
  `progress()` is called after every step."""
  if every < 1:
    raise ValueError(f"every must be >= 1, got {every}")
  mesh = distributed.make_mesh()
  text = text_lib.embed_prompts(prior, prior_params, config.prompt, config.negative_prompt,
                                config.prior.view_dependent, config.prior.textureless_drop_words)
  optimizer = step_lib.make_optimizer(config)
  state = step_lib.init_state(config, scene, optimizer, mesh)
  params = distributed.replicate(params, mesh)
  state = state.replace(params=params, opt_state=optimizer.init(params),
                        ema_params=params if state.ema_params is not None else None)
  frozen = distributed.replicate({k: v for k, v in prior_params.items() if k in ("unet", "vae")}, mesh)
  text = distributed.replicate(text, mesh)
  train_step = step_lib.make_train_step(config, scene, prior, optimizer, mesh)
  trace = [(0, score(step_lib.final_params(state)))]
  for i in range(1, int(config.num_steps) + 1):
    state, _ = train_step(state, frozen, text)
    progress()
    if i % every == 0 or i == int(config.num_steps):
      trace.append((i, score(step_lib.final_params(state))))
  return trace


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--config", default="configs/shapes.py", help="the run config whose step is measured")
  parser.add_argument("--weights", default=None,
                      help="diffusers-layout pixel prior in place of the config's prior.model (the config's "
                      "prior.ensemble stays: --set 'prior.ensemble=()' for this prior alone)")
  parser.add_argument("--prompts", default=None,
                      help="comma-separated world captions (default: the benchmark's 12)")
  parser.add_argument("--fit-steps", type=int, default=250,
                      help="Adam steps fitting the true object (250: IoU 0.73-0.97 on six of the "
                           "benchmark's prompts)")
  parser.add_argument("--every", type=int, default=100, help="score every this many training steps")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="a config field to change, e.g. --set sds.t_max=0.3 (repeatable)")
  args = parser.parse_args()
  try:
    prompts = captions.prompt_list(args.prompts)
  except ValueError as e:
    parser.error(f"--prompts: {e}")
  if args.fit_steps < 1 or args.every < 1:
    parser.error(f"--fit-steps and --every must be >= 1, got {args.fit_steps}, {args.every}")
  config = config_files.load(args.config)
  try:
    config_files.apply_overrides(config, args.set)
  except (ValueError, TypeError) as e:
    parser.error(str(e))
  if args.weights:
    config.prior.model = args.weights
  config.prompt, config.seed = prompts[0], args.seed
  found = config_check.problems(config)
  if found:
    parser.error(f"{args.config} with these flags: " + " ".join(found))
  try:
    prior, prior_params = stable_diffusion.load_from_config(config)
  except errors.PriorNotFoundError as e:
    parser.error(f"--weights: {e}")
  scene = field.make_scene(config)
  bound = float(config.nerf.bound)
  print(f"{args.config} {' '.join(args.set)}; prior {config.prior.model}; fit {args.fit_steps} steps, "
        f"then {config.num_steps} training steps; IoU with the true shape:")
  start = time.time()
  for prompt in prompts:
    config.prompt = prompt
    score = functools.partial(true_shape_iou, scene, prompt=prompt, bound=bound,
                              resolution=geometry.IOU_RESOLUTION)
    with tqdm.tqdm(total=args.fit_steps + int(config.num_steps), desc=prompt, unit="step",
                   mininterval=10.0) as bar:  # the fit's steps, then the training's
      advance = lambda: bar.update(1)
      params = fit_to_truth(config, scene, prompt, args.fit_steps, jax.random.PRNGKey(args.seed), advance)
      trace = drift(config, prior, prior_params, scene, params, args.every, score, advance)
    print(json.dumps({"prompt": prompt, "iou": {str(s): round(v, 3) for s, v in trace},
                      "seconds": round(time.time() - start)}), flush=True)


if __name__ == "__main__":
  main()
