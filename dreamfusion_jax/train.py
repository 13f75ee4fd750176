"""The training loop: set-up, resume, the jitted step, logging, preemption, export.

`train_and_evaluate(config, workdir)` is what `python -m dreamfusion_jax.main` runs. Every check that
can fail (config values, workdir, lock, weights, checkpoint compatibility) runs before compilation.
"""

import functools
import json
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax import checkpoint
from dreamfusion_jax import config_check
from dreamfusion_jax import distributed
from dreamfusion_jax import refusals
from dreamfusion_jax import step as step_lib
from dreamfusion_jax import summaries
from dreamfusion_jax import workdir as workdir_lib
from dreamfusion_jax.export import images
from dreamfusion_jax.export import run as export_run
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib


class NonFiniteError(FloatingPointError, refusals.Stop):
  """The loss or gradient stopped being finite; the last good checkpoint is kept."""


class _StopFlag:
  """Set by SIGTERM (preemption) or by a step budget; checked once per step."""

  def __init__(self):
    self.reason = None

  def __call__(self, signum, frame):
    del frame
    self.reason = f"signal {signal.Signals(signum).name}"


def _check_finite(metrics, step: int) -> None:
  if not bool(metrics["finite"]):
    raise NonFiniteError(
        f"Loss or gradient is not finite at step {step} (loss={float(metrics['loss'])}, "
        f"grad norm={float(metrics['param_grad_norm'])}). Training stopped; the last good checkpoint "
        "is kept. Lower config.optim.lr, raise config.optim.eps, or enable config.optim.grad_clip.")


def _render_fn(config, scene):
  """Jitted eval render of fixed cameras in one shading mode, params as an argument (logged view grids)."""

  @jax.jit
  def fn(params, cams, modes, step):
    return render.render_views(scene, params, cams, jax.random.PRNGKey(0), config, modes, train=False,
                               extra_variance=step_lib.encoding_blur(step, config))

  def render_fn(params, cams, mode, step=config.num_steps):
    """`step`: render the field as training step `step` sees it (blurred while coarse-to-fine runs)."""
    return fn(params, cams, jnp.full(cams.focal.shape, mode, jnp.int32), jnp.int32(step))

  return render_fn


def setup(config, workdir):
  """Everything before the first step; returns the pieces of the run. Fails fast on bad input."""
  config_check.check(config)
  workdir = workdir_lib.prepare_workdir(workdir)  # absolute: orbax refuses relative paths
  lock = workdir_lib.acquire_lock(workdir) if jax.process_index() == 0 else None
  try:
    return dict(_build(config, workdir), lock=lock, workdir=workdir)
  except BaseException:
    if lock is not None:
      lock.release()
    raise


def _build(config, workdir):
  workdir_lib.check_config_compatible(workdir, config)
  prior, prior_params = stable_diffusion.load_from_config(config)
  if jax.process_index() == 0:
    workdir_lib.save_config(workdir, config)
  text = text_lib.embed_prompts(prior, prior_params, config.prompt, config.negative_prompt,
                                config.prior.view_dependent, config.prior.textureless_drop_words)
  mesh = distributed.make_mesh()
  scene = field.make_scene(config, out_channels=prior.channels if config.prior.latent_render else 3)
  optimizer = step_lib.make_optimizer(config)
  manager = checkpoint.make_manager(workdir, config.log.keep_checkpoints, config.log.checkpoint_every)
  state, start = checkpoint.restore_latest(manager, step_lib.init_state(config, scene, optimizer, mesh))
  frozen = {k: v for k, v in prior_params.items() if k in ("unet", "vae")}
  return dict(prior=prior, prior_params=distributed.replicate(frozen, mesh),
              text=distributed.replicate(text, mesh), mesh=mesh, scene=scene, optimizer=optimizer,
              manager=manager, state=state, start=start)


def train_and_evaluate(config, workdir: str, *, stop_after: int | None = None) -> step_lib.TrainState:
  """Trains (or resumes) a run in `workdir`; writes summary.json and returns the final state.

  stop_after: stop, as a preemption would, after this many steps of this invocation (tests).
  """
  run = setup(config, workdir)
  workdir = run["workdir"]
  state, start, manager = run["state"], run["start"], run["manager"]
  train_step = step_lib.make_train_step(config, run["scene"], run["prior"], run["optimizer"], run["mesh"])
  render_fn = _render_fn(config, run["scene"])
  reporter = summaries.Reporter(workdir, config.num_steps, start)
  stop = _StopFlag()
  previous_handler = signal.signal(signal.SIGTERM, stop)
  end = config.num_steps if stop_after is None else min(config.num_steps, start + stop_after)
  metrics, step = {}, start
  try:
    for step in range(start + 1, end + 1):
      if stop.reason:
        step -= 1
        break
      state, metrics = train_step(state, run["prior_params"], run["text"])
      reporter.advance(step)
      if step % config.log.every == 0 or step == end or manager.should_save(step):
        _check_finite(metrics, step)
        reporter.show_loss(float(metrics["loss"]))
        reporter.scalars(step, {k: v for k, v in metrics.items() if k != "finite"})
      if step % config.log.images_every == 0 and reporter.active:
        params = distributed.local_copy(state.params)
        at_step = functools.partial(render_fn, step=step)
        reporter.image(step, "views", summaries.view_grid(at_step, params, config))
      checkpoint.save(manager, step, state)
    else:
      if stop_after is not None and end < config.num_steps:
        stop.reason = f"stop_after={stop_after}"
    if metrics:
      _check_finite(metrics, step)
    checkpoint.save(manager, step, state, force=True)
  finally:
    checkpoint.wait(manager)
    signal.signal(signal.SIGTERM, previous_handler)
    reporter.close()
    if run["lock"] is not None:
      run["lock"].release()
  summary = _summarize(config, step, reporter.wall_time, metrics, stopped=stop.reason)
  if stop.reason is None and jax.process_index() == 0:
    params = distributed.local_copy(step_lib.final_params(state))
    out_dir = f"{workdir}/export/step_{step}"
    summary["outputs"] = export_run.export_all(config, run["scene"], params, out_dir,
                                               config.export.formats, jax.random.PRNGKey(config.seed))
    summary["outputs"]["views"] = _save_views(out_dir, render_fn, params, config)
  if jax.process_index() == 0:
    with open(f"{workdir}/summary.json", "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True, default=str)
  return state


def _save_views(out_dir, render_fn, params, config) -> str:
  path = f"{out_dir}/views.png"
  images.save_png(path, summaries.view_grid(render_fn, params, config))
  return path


def _summarize(config, step, wall_time, metrics, stopped) -> dict:
  return {
      "prompt": config.prompt,
      "distill": config.distill,
      "steps": int(step),
      "num_steps": config.num_steps,
      "finished": stopped is None,
      "stopped_by": stopped,
      "wall_time_s": round(wall_time, 2),
      "devices": jax.device_count(),
      "final": {k: float(np.asarray(v)) for k, v in metrics.items()},
      "config": json.loads(config.to_json_best_effort()),
      "time": time.strftime("%Y-%m-%d %H:%M:%S"),
  }
