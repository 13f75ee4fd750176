"""The training step and loop: sharding invariance, resume, failure handling, end-to-end outputs."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax import checkpoint
from dreamfusion_jax import config_check
from dreamfusion_jax import distributed
from dreamfusion_jax import refusals
from dreamfusion_jax import step as step_lib
from dreamfusion_jax import train
from dreamfusion_jax import workdir as workdir_lib
from dreamfusion_jax.nerf import field
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import testing as prior_testing
from dreamfusion_jax.prior import text as text_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))
import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="module")
def pixel_prior(tmp_path_factory):
  return prior_testing.tiny_prior_dir(tmp_path_factory.mktemp("prior"), "pixel")


def _config(prior_dir, **overrides):
  c = tiny.get_config()
  c.prompt = "a red cube"
  c.prior.model = str(prior_dir)
  return helpers.override(c, **overrides)


def _run_steps(config, mesh, num_steps, text=None):
  """(the params before and after each step, the final state, the last step's metrics)."""
  prior, prior_params = stable_diffusion.load_from_config(config)
  if text is None:
    text = text_lib.embed_prompts(prior, prior_params, config.prompt, config.negative_prompt, True)
  scene = field.make_scene(config)
  optimizer = step_lib.make_optimizer(config)
  state = step_lib.init_state(config, scene, optimizer, mesh)
  frozen = distributed.replicate({k: v for k, v in prior_params.items() if k in ("unet", "vae")}, mesh)
  text = distributed.replicate(text, mesh)
  iterates = [jax.device_get(state.params)]
  train_step = step_lib.make_train_step(config, scene, prior, optimizer, mesh)
  for _ in range(num_steps):
    state, metrics = train_step(state, frozen, text)
    iterates.append(jax.device_get(state.params))
  assert bool(metrics["finite"])
  return iterates, state, metrics


def _params_after(config, mesh, num_steps, text=None):
  iterates, _, metrics = _run_steps(config, mesh, num_steps, text)
  return iterates[0], iterates[-1], metrics


def test_sharded_step_equals_single_device_step(pixel_prior):
  """8 devices x 1 view == 1 device x 8 views: same cameras, same noise, same update."""
  assert jax.device_count() == 8, "tests/conftest.py sets 8 fake CPU devices"
  initial, sharded, m8 = _params_after(_config(pixel_prior, batch_per_device=1), distributed.make_mesh(), 2)
  _, single, m1 = _params_after(_config(pixel_prior, batch_per_device=8),
                                distributed.make_mesh(jax.devices()[:1]), 2)
  np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-4)
  for a, b in zip(jax.tree_util.tree_leaves(sharded), jax.tree_util.tree_leaves(single)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree_util.tree_leaves(sharded),
                                               jax.tree_util.tree_leaves(initial))]
  assert max(moved) > 1e-5, "the steps must change the params for the comparison to mean anything"


def test_textureless_views_use_the_prompt_without_the_dropped_words(pixel_prior):
  """Every view textureless: a step with "a red cube" minus "red" equals a step with "a cube"."""
  config = _config(pixel_prior, batch_per_device=2, shading__ambient_only_steps=0,
                   shading__shaded_prob=1.0, shading__textureless_prob=1.0)
  prior, prior_params = stable_diffusion.load_from_config(config)
  red = text_lib.embed_prompts(prior, prior_params, "a red cube", "", True, ("red",))
  plain = text_lib.embed_prompts(prior, prior_params, "a cube", "", True)
  one = distributed.make_mesh(jax.devices()[:1])
  _, with_drop, _ = _params_after(config, one, 1, text=red)
  _, with_plain, _ = _params_after(config, one, 1, text=plain)
  _, with_red, _ = _params_after(config, one, 1, text=red.replace(textureless=None))
  for a, b in zip(jax.tree_util.tree_leaves(with_drop), jax.tree_util.tree_leaves(with_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  gap = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(with_drop),
                                                       jax.tree_util.tree_leaves(with_red)))
  assert gap > 1e-6, "the colourless prompt must change the update for the comparison to mean anything"


def test_moving_average_is_the_closed_form_of_the_iterates(pixel_prior):
  """ema_T = d^T p_0 + (1 - d) sum_s d^(T-s) p_s over the iterates p_1..p_T; the training is unchanged."""
  decay, num_steps = 0.5, 3
  mesh = distributed.make_mesh()
  iterates, state, _ = _run_steps(_config(pixel_prior, optim__ema_decay=decay), mesh, num_steps)
  weights = [decay ** num_steps] + [(1 - decay) * decay ** (num_steps - s) for s in range(1, num_steps + 1)]
  expected = jax.tree_util.tree_map(lambda *ps: sum(w * p for w, p in zip(weights, ps)), *iterates)
  leaves = jax.tree_util.tree_leaves
  for a, b in zip(leaves(step_lib.final_params(state)), leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-7)
  gap = max(np.abs(a - b).max() for a, b in zip(leaves(iterates[-1]), leaves(expected)))
  assert gap > 1e-6, "the average must differ from the last iterate for the check to mean anything"
  _, raw, _ = _params_after(_config(pixel_prior), mesh, num_steps)
  for a, b in zip(leaves(raw), leaves(iterates[-1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resumed_run_equals_uninterrupted_run(pixel_prior, tmp_path, ema_decay):
  config = _config(pixel_prior, export__formats=(), optim__ema_decay=ema_decay)
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  first = train.train_and_evaluate(config, str(tmp_path / "resumed"), stop_after=2)
  assert int(first.step) == 2
  summary = json.load(open(tmp_path / "resumed" / "summary.json"))
  assert summary["finished"] is False and summary["steps"] == 2
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert int(resumed.step) == config.num_steps
  for a, b in zip(jax.tree_util.tree_leaves(straight.params), jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  # What an export or the benchmark restores is the average when the run keeps one.
  assert (straight.ema_params is None) == (ema_decay == 0.0)
  restored, step = checkpoint.restore_params(str(tmp_path / "resumed"),
                                             item=step_lib.final_params_item(config))
  assert step == config.num_steps
  leaves = jax.tree_util.tree_leaves
  for a, b in zip(leaves(step_lib.final_params(straight)), leaves(restored)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_non_finite_loss_stops_naming_the_step(pixel_prior, tmp_path, capsys):
  config = _config(pixel_prior, sds__guidance_scale=float("inf"))
  with pytest.raises(train.NonFiniteError, match="not finite at step 1"):
    train.train_and_evaluate(config, str(tmp_path / "nan"))
  assert checkpoint.latest_step(checkpoint.make_manager(str(tmp_path / "nan"), 3, 2)) is None
  # The command-line entry points print it as one message and exit 1, as they do a refusal.
  with pytest.raises(SystemExit) as stopped, refusals.as_messages():
    train.train_and_evaluate(config, str(tmp_path / "nan_cli"))
  assert stopped.value.code == 1
  err = capsys.readouterr().err
  assert "\nerror: Loss or gradient is not finite at step 1" in err


def test_refusals_come_before_any_work(pixel_prior, tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(config_check.ConfigError, match="config.distill"):
    train.train_and_evaluate(_config(pixel_prior, distill="nope"), workdir)
  with pytest.raises(Exception, match="Cannot load the diffusion prior from .*no_such_prior"):
    train.train_and_evaluate(_config(tmp_path / "no_such_prior"), workdir)
  lock = workdir_lib.acquire_lock(workdir)
  try:
    with pytest.raises(Exception, match="(?i)another|in use|lock"):
      train.train_and_evaluate(_config(pixel_prior), workdir)
  finally:
    lock.release()
  workdir_lib.save_config(workdir, _config(pixel_prior, nerf__width=64))
  with pytest.raises(Exception, match="nerf.width"):
    train.train_and_evaluate(_config(pixel_prior), workdir)
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(Exception, match="a_file"):
    train.train_and_evaluate(_config(pixel_prior), str(blocker / "run"))


def test_main_command_writes_every_output(tmp_path):
  """The documented command, 3 steps on a tiny latent prior (VAE path), in a fresh process."""
  prior_dir = prior_testing.tiny_prior_dir(tmp_path / "prior", "latent")
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "dreamfusion_jax.main", "--config", os.path.join(ROOT, "configs", "tiny.py"),
         f"--config.prior.model={prior_dir}", "--config.prompt=a red cube", "--config.num_steps=3",
         "--workdir=run"]  # relative, as people type it
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=ROOT)
  result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.load(open(workdir / "summary.json"))
  assert summary["steps"] == 3 and summary["finished"] is True
  assert checkpoint.latest_step(checkpoint.make_manager(str(workdir), 3, 2)) == 3
  for ext in ("mp4", "gif", "glb", "obj"):
    assert any(name.endswith(ext) for name in os.listdir(workdir / "export" / "step_3")), ext
  assert os.listdir(workdir / "tensorboard")
  assert json.load(open(workdir / "config.json"))["prompt"] == "a red cube"
  # Orbax's ~40 INFO lines per checkpoint stay out of the console (the progress bar stays readable).
  assert "checkpoint_manager.py" not in result.stderr and "3/3 [" in result.stderr
  # Any checkpoint exports on demand, into its own folder (the finished run's outputs stay untouched).
  from dreamfusion_jax.export import run as export_run  # pylint: disable=g-import-not-at-top
  written = export_run.export_checkpoint(str(workdir), step=2, formats=["obj"])
  assert written["step"] == 2 and written["mesh"][0].endswith("step_2/mesh.obj")
  assert os.path.exists(workdir / "export" / "step_3" / "mesh.glb")
  # The same folder with another prompt is refused: the message alone on stderr (no traceback), exit 1,
  # and the finished run left as it was.
  stamp = os.path.getmtime(workdir / "summary.json")
  cmd[cmd.index("--config.prompt=a red cube")] = "--config.prompt=a blue torus"
  refused = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert refused.returncode == 1, refused.stderr[-3000:]
  assert "error: --workdir" in refused.stderr and "Traceback" not in refused.stderr
  assert "prompt: 'a red cube' (saved) -> 'a blue torus' (now)" in refused.stderr
  assert os.path.getmtime(workdir / "summary.json") == stamp
  assert json.load(open(workdir / "config.json"))["prompt"] == "a red cube"


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(pixel_prior, tmp_path):
  """Preemption: SIGTERM mid-run saves the current step and exits 0; the same command resumes."""
  workdir = tmp_path / "preempted"
  cmd = [sys.executable, "-m", "dreamfusion_jax.main", "--config", "configs/tiny.py",
         f"--config.prior.model={pixel_prior}", "--config.prompt=a red cube", "--config.num_steps=100000",
         "--config.log.checkpoint_every=1000", f"--workdir={workdir}"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  # Wait until training is under way (the TensorBoard event file gets scalars every step).
  deadline = time.time() + 300
  while time.time() < deadline and not (workdir / "tensorboard").exists():
    time.sleep(0.5)
  time.sleep(5.0)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  summary = json.load(open(workdir / "summary.json"))
  assert summary["finished"] is False and summary["stopped_by"] == "signal SIGTERM"
  saved = checkpoint.latest_step(checkpoint.make_manager(str(workdir), 3, 1000))
  assert saved == summary["steps"] > 0, "the step reached at SIGTERM is checkpointed"
