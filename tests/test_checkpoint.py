"""Checkpoints, the workdir lock and the resume-compatibility check."""

import contextlib
import json
import logging
import os
import subprocess
import sys

from absl import logging as absl_logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dreamfusion_jax import checkpoint
from dreamfusion_jax import workdir as workdir_lib

# After a failed read of a damaged checkpoint, orbax leaves tensorstore callbacks aimed at its closed
# event loop; Python reports them whenever they are collected, in whichever test runs then.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@flax.struct.dataclass
class State:
  params: dict
  opt_state: optax.OptState
  step: jax.Array
  key: jax.Array


def _state(width: int = 4, seed: int = 0, extra: bool = False) -> State:
  """An Adam train state whose values depend on `seed`, after one update so moments are nonzero."""
  k = jax.random.key(seed)
  params = {"dense": {"kernel": jax.random.normal(k, (3, width)),
                      "bias": jnp.arange(width, dtype=jnp.float32)}}
  if extra:
    params["head"] = {"kernel": jnp.ones((width, 2))}
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)
  grads = jax.tree_util.tree_map(lambda p: p + 1.0, params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return State(optax.apply_updates(params, updates), opt_state, jnp.asarray(seed, jnp.int32),
               jax.random.fold_in(k, 7))


def _assert_same(a: State, b: State) -> None:
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_restore_roundtrip_including_optimizer_state(tmp_path):
  manager = checkpoint.make_manager(tmp_path, keep=2, every=1)
  saved = _state(seed=3)
  assert checkpoint.save(manager, 5, saved)
  checkpoint.wait(manager)
  restored, step = checkpoint.restore_latest(manager, _state(seed=0))
  assert step == 5
  _assert_same(restored, saved)
  # The optimizer state keeps optax's own types (not the nested lists orbax stores).
  assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)


@flax.struct.dataclass
class StateWithAverage:
  params: dict
  opt_state: optax.OptState
  step: jax.Array
  key: jax.Array
  average: dict = None  # None when not kept, as TrainState.ema_params


def test_a_field_that_is_none_is_not_stored_so_checkpoints_from_before_it_restore(tmp_path):
  """A checkpoint written before a None-able field existed restores into the state that has it (None),
  and one written with it None is the same tree; with the field set, it is stored and restored too."""
  old = _state(seed=5)
  manager = checkpoint.make_manager(tmp_path / "old", keep=2, every=1)
  manager.save(4, args=checkpoint.ocp.args.StandardSave(old))  # what the code before the field wrote
  checkpoint.wait(manager)
  fresh = _state(seed=0)
  target = StateWithAverage(fresh.params, fresh.opt_state, fresh.step, fresh.key)
  restored, step = checkpoint.restore_latest(manager, target)
  assert step == 4 and isinstance(restored, StateWithAverage) and restored.average is None
  _assert_same(State(restored.params, restored.opt_state, restored.step, restored.key), old)
  for average in (None, jax.tree_util.tree_map(lambda p: 2.0 * p, old.params)):
    manager = checkpoint.make_manager(tmp_path / f"new_{average is None}", keep=2, every=1)
    saved = StateWithAverage(old.params, old.opt_state, old.step, old.key, average)
    checkpoint.save(manager, 6, saved)
    checkpoint.wait(manager)
    restored, _ = checkpoint.restore_latest(manager, target.replace(average=None if average is None else
                                                                      fresh.params))
    _assert_same(restored, saved)


def test_restore_with_no_checkpoint_returns_target(tmp_path):
  manager = checkpoint.make_manager(tmp_path, keep=1, every=1)
  target = _state()
  state, step = checkpoint.restore_latest(manager, target)
  assert step == 0 and state is target
  assert checkpoint.latest_step(manager) is None


def test_interval_keep_n_and_forced_final_save(tmp_path):
  manager = checkpoint.make_manager(tmp_path, keep=2, every=10)
  state = _state()
  saved = [s for s in range(0, 41) if checkpoint.save(manager, s, state)]
  assert saved == [0, 10, 20, 30, 40]
  assert checkpoint.save(manager, 43, state, force=True)
  assert not checkpoint.save(manager, 43, state, force=True)  # already on disk: skipped, no error
  checkpoint.wait(manager)
  assert sorted(manager.all_steps()) == [40, 43]
  assert sorted(os.listdir(checkpoint.checkpoint_dir(tmp_path))) == ["40", "43"]
  assert checkpoint.latest_step(manager) == 43


def test_restore_onto_sharded_target_uses_its_sharding(tmp_path):
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.device_put(_state(seed=2), replicated)
  manager = checkpoint.make_manager(tmp_path, keep=1, every=1)
  checkpoint.save(manager, 1, state)
  checkpoint.wait(manager)
  target = jax.device_put(_state(seed=9), replicated)
  restored, _ = checkpoint.restore_latest(manager, target)
  _assert_same(restored, state)
  assert restored.params["dense"]["kernel"].sharding == replicated


@pytest.mark.parametrize("change", ["shape", "structure"])
def test_mismatched_target_raises_clear_error(tmp_path, change):
  manager = checkpoint.make_manager(tmp_path, keep=1, every=1)
  checkpoint.save(manager, 1, _state(width=4))
  checkpoint.wait(manager)
  target = _state(width=5) if change == "shape" else _state(extra=True)
  with pytest.raises(checkpoint.CheckpointError) as info:
    checkpoint.restore_latest(manager, target)
  message = str(info.value)
  assert "does not match the model" in message and "fresh --workdir" in message
  if change == "shape":
    assert "params/dense/kernel: checkpoint shape (3, 4), model shape (3, 5)" in message
  else:
    assert "params/head/kernel: in the model, not in the checkpoint" in message


def _corrupt_files(step_dir: str) -> int:
  """Overwrites every array data file of a step with garbage of the same length."""
  count = 0
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      if os.sep + "d" + os.sep in path + os.sep or name == "manifest.ocdbt":
        with open(path, "r+b") as f:
          size = len(f.read())
          f.seek(0)
          f.write(b"\x5a" * size)
        count += 1
  return count


@pytest.mark.parametrize("damage", ["metadata", "data"])
def test_corrupt_checkpoint_raises_clear_error(tmp_path, damage):
  manager = checkpoint.make_manager(tmp_path, keep=1, every=1)
  checkpoint.save(manager, 7, _state())
  checkpoint.wait(manager)
  step_dir = os.path.join(checkpoint.checkpoint_dir(tmp_path), "7")
  if damage == "metadata":
    with open(os.path.join(step_dir, "default", "_METADATA"), "w") as f:
      f.write("{not json")
  else:
    assert _corrupt_files(step_dir) > 0
  fresh = checkpoint.make_manager(tmp_path, keep=1, every=1)
  with pytest.raises(checkpoint.CheckpointError, match="corrupt or incomplete") as info:
    checkpoint.restore_latest(fresh, _state())
  assert step_dir in str(info.value)


@contextlib.contextmanager
def _absl_records():
  """The records absl's logger emits inside the block (at the threshold of the moment)."""
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  absl_logging.get_absl_logger().addHandler(handler)
  try:
    yield records
  finally:
    absl_logging.get_absl_logger().removeHandler(handler)


def test_restore_params_without_template(tmp_path):
  verbosity_before = absl_logging.get_verbosity()
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  state = jax.device_put(_state(seed=4), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  manager = checkpoint.make_manager(tmp_path, keep=3, every=1)
  checkpoint.save(manager, 2, _state(seed=1))
  checkpoint.save(manager, 6, state)
  checkpoint.wait(manager)
  with _absl_records() as records:
    params, step = checkpoint.restore_params(tmp_path)
  assert not [r for r in records if r.levelno >= logging.WARNING], "restoring is silent unless it fails"
  assert absl_logging.get_verbosity() == verbosity_before  # the threshold comes back
  assert step == 6
  leaf = params["dense"]["kernel"]
  assert isinstance(leaf, np.ndarray)
  np.testing.assert_array_equal(leaf, np.asarray(state.params["dense"]["kernel"]))
  older, step = checkpoint.restore_params(tmp_path, step=2)
  assert step == 2
  np.testing.assert_array_equal(older["dense"]["bias"], np.asarray(_state(seed=1).params["dense"]["bias"]))
  with pytest.raises(checkpoint.CheckpointError, match="saved steps: \\[2, 6\\]"):
    checkpoint.restore_params(tmp_path, step=3)
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoints"):
    checkpoint.restore_params(tmp_path / "elsewhere")


def test_bad_manager_options_raise_value_error(tmp_path):
  with pytest.raises(ValueError, match="keep_checkpoints"):
    checkpoint.make_manager(tmp_path, keep=0, every=1)
  with pytest.raises(ValueError, match="checkpoint_every"):
    checkpoint.make_manager(tmp_path, keep=1, every=0)


# ---- workdir -----------------------------------------------------------------------------------------


def test_lock_refuses_second_holder_until_released(tmp_path):
  lock = workdir_lib.acquire_lock(str(tmp_path))
  with pytest.raises(workdir_lib.WorkdirError, match=f"pid {os.getpid()}") as info:
    workdir_lib.acquire_lock(str(tmp_path))
  assert "different --workdir" in str(info.value)
  # Another process of the same run locks its own file.
  workdir_lib.acquire_lock(str(tmp_path), process_index=1).release()
  lock.release()
  with workdir_lib.acquire_lock(str(tmp_path)):
    pass


def test_lock_of_a_killed_process_is_released_by_the_os(tmp_path):
  # A child takes the lock and dies without releasing it; flock dies with it.
  code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from dreamfusion_jax import workdir; "
          "workdir.acquire_lock(sys.argv[1]); os._exit(0)")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, "-c", code, str(tmp_path), repo], check=True)
  workdir_lib.acquire_lock(str(tmp_path)).release()


def test_lock_held_by_another_live_process_is_refused(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = ("import sys; sys.path.insert(0, sys.argv[2]); from dreamfusion_jax import workdir; "
          "workdir.acquire_lock(sys.argv[1]); print('locked', flush=True); sys.stdin.read()")
  child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), repo],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lib.WorkdirError, match=f"pid {child.pid}"):
      workdir_lib.acquire_lock(str(tmp_path))
  finally:
    child.stdin.close()
    child.wait(timeout=30)
    child.stdout.close()
  workdir_lib.acquire_lock(str(tmp_path)).release()


def test_unusable_workdir_errors_name_the_path(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(workdir_lib.WorkdirError, match="is not a folder") as info:
    workdir_lib.prepare_workdir(str(a_file))
  assert str(a_file) in str(info.value)
  with pytest.raises(workdir_lib.WorkdirError, match="cannot be created or written"):
    workdir_lib.prepare_workdir(str(a_file / "under_a_file"))
  if os.geteuid() != 0:  # root ignores permission bits, so this case only runs as a normal user
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o555)
    with pytest.raises(workdir_lib.WorkdirError, match="cannot be created or written"):
      workdir_lib.prepare_workdir(str(read_only / "run"))
  assert workdir_lib.prepare_workdir(str(tmp_path / "new" / "run")) == str(tmp_path / "new" / "run")


def _config(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "prompt": "a corgi", "distill": "sds", "num_steps": 100,
      "nerf": {"width": 128, "num_blocks": 5, "bound": 1.4},
      "prior": {"model": "sd-2.1", "latent_render": False, "dtype": "bfloat16"},
      "log": {"every": 50}, "export": {"formats": ("mp4", "glb")}})
  for name, value in overrides.items():
    section, _, field = name.rpartition("__")
    (c[section] if section else c)[field] = value
  return c


def test_config_saved_sorted_and_compatible_changes_allowed(tmp_path):
  path = workdir_lib.save_config(str(tmp_path), _config())
  with open(path) as f:
    text = f.read()
  assert list(json.loads(text)) == sorted(json.loads(text))
  assert json.loads(text)["export"]["formats"] == ["mp4", "glb"]
  # Tuples read back as lists; steps, logging and the prior's dtype may change on resume.
  workdir_lib.check_config_compatible(str(tmp_path), _config(num_steps=500, log__every=10,
                                                             prior__dtype="float32"))


def test_config_incompatible_fields_are_named(tmp_path):
  workdir_lib.save_config(str(tmp_path), _config())
  changed = _config(prompt="a cat", nerf__width=64, prior__latent_render=True)
  with pytest.raises(workdir_lib.WorkdirError) as info:
    workdir_lib.check_config_compatible(str(tmp_path), changed)
  message = str(info.value)
  assert "nerf.width: 128 (saved) -> 64 (now)" in message
  assert "prompt: 'a corgi' (saved) -> 'a cat' (now)" in message
  assert "prior.latent_render: False (saved) -> True (now)" in message
  assert "num_steps" not in message and "new --workdir" in message


def test_config_saved_before_a_field_was_added_resumes_with_its_old_behaviour(tmp_path):
  workdir_lib.save_config(str(tmp_path), _config())  # no nerf.random_background_prob
  assert workdir_lib.load_config(str(tmp_path))["nerf"]["random_background_prob"] == 0.0  # read back filled in
  workdir_lib.check_config_compatible(str(tmp_path), _config(nerf__random_background_prob=0.0))
  with pytest.raises(workdir_lib.WorkdirError, match=r"random_background_prob: 0.0 \(saved\) -> 0.5"):
    workdir_lib.check_config_compatible(str(tmp_path), _config(nerf__random_background_prob=0.5))


def test_training_differences_name_what_changes_a_run_but_not_logging_or_exports(tmp_path):
  workdir_lib.save_config(str(tmp_path), _config())
  saved = workdir_lib.load_config(str(tmp_path))
  assert workdir_lib.training_differences(saved, _config(log__every=10, export__formats=("gif",))) == []
  assert workdir_lib.training_differences(saved, _config(num_steps=500, prior__dtype="float32")) == [
      ("num_steps", 100, 500), ("prior.dtype", "bfloat16", "float32")]  # free to change on resume, not here
  # A field added after the run was saved reads as what the run did: equal to it, or named.
  later = _config()
  later.sds = ml_collections.ConfigDict({"num_samples": 1})
  assert workdir_lib.training_differences(saved, later) == []
  later.sds.num_samples = 4
  assert workdir_lib.training_differences(saved, later) == [("sds.num_samples", 1, 4)]
  later.sds.weighting = "uniform"  # a field the saved config lacks and that has no recorded old value
  assert ("sds.weighting", "<absent>", "uniform") in workdir_lib.training_differences(saved, later)


def _write_prior(folder, unet_bytes=b"unet weights", extra=None):
  for name, data in {"unet/diffusion_flax_model.msgpack": unet_bytes, "unet/config.json": b"{}",
                     "scheduler/scheduler_config.json": b"{}", **(extra or {})}.items():
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
  return str(folder)


def test_a_prior_is_compared_by_its_files_not_its_path(tmp_path):
  shipped = _write_prior(tmp_path / "repo" / "weights", extra={"judge/model.msgpack": b"judge"})
  copy = _write_prior(tmp_path / "elsewhere" / "export", extra={"training.json": b"{}"})  # other non-prior files
  other = _write_prior(tmp_path / "other", unet_bytes=b"other unet weights")
  renamed = _write_prior(tmp_path / "renamed", extra={"unet/extra.json": b"{}"})
  (tmp_path / "run").mkdir()
  workdir_lib.save_config(str(tmp_path / "run"), _config(prior__model=copy))
  saved = workdir_lib.load_config(str(tmp_path / "run"))
  assert workdir_lib.prior_digest(shipped) == workdir_lib.prior_digest(copy) is not None
  # PRIOR_PARTS is what the loader reads (kept in workdir.py, which must not import the loader's jax).
  from dreamfusion_jax.prior import checkpoint as prior_checkpoint  # pylint: disable=g-import-not-at-top
  assert set(workdir_lib.PRIOR_PARTS) == set(prior_checkpoint.MODEL_FOLDERS) | {
      "tokenizer", os.path.dirname(prior_checkpoint.SCHEDULER_FILE)}
  assert workdir_lib.training_differences(saved, _config(prior__model=shipped)) == []
  workdir_lib.check_config_compatible(str(tmp_path / "run"), _config(prior__model=shipped))  # resumes
  for changed in (other, renamed, "stabilityai/stable-diffusion-2-1-base", str(tmp_path / "missing")):
    assert workdir_lib.training_differences(saved, _config(prior__model=changed)) == [
        ("prior.model", copy, changed)]
  # An edited file is read again, not answered from the cache.
  (tmp_path / "elsewhere" / "export" / "unet" / "diffusion_flax_model.msgpack").write_bytes(b"edited weights")
  assert workdir_lib.training_differences(saved, _config(prior__model=shipped)) == [
      ("prior.model", copy, shipped)]
  hub = _config(prior__model="stabilityai/stable-diffusion-2-1-base")
  assert workdir_lib.prior_digest(hub.prior.model) is None  # not a folder: compared as a name
  (tmp_path / "hub_run").mkdir()
  workdir_lib.save_config(str(tmp_path / "hub_run"), hub)
  assert workdir_lib.training_differences(workdir_lib.load_config(str(tmp_path / "hub_run")), hub) == []


def test_config_check_passes_for_fresh_workdir(tmp_path):
  workdir_lib.check_config_compatible(str(tmp_path / "fresh"), _config())


def test_lock_without_flock_falls_back_to_the_recorded_pid(tmp_path, monkeypatch):
  import errno  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top

  def no_flock(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(workdir_lib.fcntl, "flock", no_flock)
  lock_file = tmp_path / ".lock.process0"
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    lock_file.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
    with pytest.raises(workdir_lib.WorkdirError, match=f"pid {sleeper.pid}"):
      workdir_lib.acquire_lock(str(tmp_path))
  finally:
    sleeper.kill()
    sleeper.wait()
  # The recorded process is gone: the lock is stale and taken over.
  workdir_lib.acquire_lock(str(tmp_path)).release()
  assert json.loads(lock_file.read_text())["pid"] == os.getpid()
