"""Checkpoints of the train state: a thin layer over orbax's CheckpointManager.

orbax does the hard parts: each step is written to a temporary folder and renamed when complete
(atomic), old steps are pruned, multi-host runs write each host's shards with barriers in between,
and the device-to-host copy happens before `save` returns, so the caller may donate the state to the
next step right away. This module adds what a run needs around it: one place for the layout
(workdir/checkpoints/<step>), a restore that takes the structure and shardings from the freshly
initialised state, and errors that say what is wrong in words instead of an orbax traceback.

Every process of a multi-process run must call `make_manager`, `save`, `restore_latest` and `wait`.
"""

import contextlib
import dataclasses
import os
from typing import Any, Optional

from absl import logging

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
  """A checkpoint cannot be restored: it does not match the model, or it is corrupt."""


def checkpoint_dir(workdir: str) -> str:
  """workdir/checkpoints, absolute (orbax refuses relative paths); remote URLs are kept as given."""
  workdir = str(workdir)
  if "://" not in workdir:
    workdir = os.path.abspath(workdir)
  return os.path.join(workdir, CHECKPOINT_DIR)


def make_manager(workdir: str, keep: int, every: int) -> ocp.CheckpointManager:
  """A manager saving every `every` steps into workdir/checkpoints and keeping the latest `keep`.

  `keep` and `every` come from config.log.keep_checkpoints and config.log.checkpoint_every.
  """
  if int(keep) < 1:
    raise ValueError(f"config.log.keep_checkpoints must be >= 1, got {keep}")
  if int(every) < 1:
    raise ValueError(f"config.log.checkpoint_every must be >= 1, got {every}")
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(int(every)),
      preservation_policy=ocp.checkpoint_managers.LatestN(int(keep)),
      create=True)
  return ocp.CheckpointManager(
      checkpoint_dir(workdir), options=options, item_handlers=ocp.StandardCheckpointHandler())


def save(manager: ocp.CheckpointManager, step: int, state: Any, force: bool = False) -> bool:
  """Saves `state` at `step` if the interval says so (or `force`); returns whether it saved.

  A step that is already on disk is skipped, so a forced save of the final step is safe even when the
  periodic save just wrote it. The write finishes in the background; call `wait` before exiting.
  """
  step = int(step)
  if step in manager.all_steps():
    return False
  return manager.save(step, args=ocp.args.StandardSave(_stored_form(state)), force=force)


def _stored_form(state: Any) -> Any:
  """A dataclass state as the dict of its fields that are not None; anything else as it is.

  A field that is None holds no arrays (TrainState.ema_params when no average is kept), so it is left
  out of the checkpoint: a state with it None and one from before the field existed store the same tree.
  """
  if not dataclasses.is_dataclass(state):
    return state
  return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
          if getattr(state, f.name) is not None}


def wait(manager: ocp.CheckpointManager) -> None:
  """Blocks until background writes are on disk."""
  manager.wait_until_finished()


def latest_step(manager: ocp.CheckpointManager) -> Optional[int]:
  """The newest complete step in the manager's folder, or None."""
  return manager.latest_step()


def _shape(leaf: Any) -> tuple:
  """The stored shape of a leaf: typed PRNG keys are written as their raw uint32 data."""
  dtype = getattr(leaf, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
  return tuple(np.shape(leaf))


def _mismatches(stored: dict, target: dict) -> list:
  """Human-readable lines for every leaf missing on one side or differing in shape."""
  lines = []
  for name in sorted(set(stored) | set(target)):
    if name not in target:
      lines.append(f"  {name}: in the checkpoint, not in the model")
    elif name not in stored:
      lines.append(f"  {name}: in the model, not in the checkpoint")
    elif tuple(stored[name].shape) != _shape(target[name]):
      lines.append(f"  {name}: checkpoint shape {tuple(stored[name].shape)}, model shape "
                   f"{_shape(target[name])}")
  return lines


def _step_path(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(manager.directory), str(step))


def _stored_leaves(manager: ocp.CheckpointManager, step: int) -> dict:
  """{"a/b/c": metadata} of the saved tree, or CheckpointError when its metadata cannot be read."""
  try:
    metadata = manager.item_metadata(step)
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    if tree is None:
      raise ValueError("no metadata")
    return ocp.tree.to_flat_dict(tree, sep="/")
  except Exception as e:  # orbax raises many types for a damaged folder
    raise _corrupt(manager, step, e) from e


def _corrupt(manager: ocp.CheckpointManager, step: int, error: Exception) -> CheckpointError:
  reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
  return CheckpointError(
      f"checkpoint {_step_path(manager, step)!r} is corrupt or incomplete and cannot be read "
      f"({type(error).__name__}: {reason}). Delete that step folder to resume from an earlier one, or "
      "pass a fresh --workdir.")


def restore_latest(manager: ocp.CheckpointManager, target_state: Any) -> tuple:
  """Restores the newest checkpoint into the structure, dtypes and shardings of `target_state`.

  `target_state` is the freshly initialised state (arrays or jax.ShapeDtypeStruct with shardings);
  restored arrays are placed with its shardings, so the same call serves one device or a pod.

  Returns:
    (state, step) from the newest checkpoint, or (target_state, 0) when there is none.
  Raises:
    CheckpointError: the checkpoint's tree or shapes differ from the target (the message lists the
      leaves), or its files are damaged.
  """
  step = manager.latest_step()
  if step is None:
    return target_state, 0
  stored = _stored_leaves(manager, step)
  target = _stored_form(target_state)
  lines = _mismatches(stored, ocp.tree.to_flat_dict(target, sep="/"))
  if lines:
    raise CheckpointError(
        f"checkpoint {_step_path(manager, step)!r} does not match the model being trained (a different "
        "config or code version wrote it):\n" + "\n".join(lines[:20])
        + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        + "\nPass a fresh --workdir, or resume with the config that wrote this checkpoint.")
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # the tree matched, so a failure here means damaged files
    raise _corrupt(manager, step, e) from e
  state = dataclasses.replace(target_state, **restored) if dataclasses.is_dataclass(target_state) else restored
  return state, int(step)


@contextlib.contextmanager
def _absl_errors_only():
  """Raises absl's log threshold to ERROR inside the block, restoring it after."""
  before = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(before)


def restore_params(workdir: str, step: Optional[int] = None, item: str = "params") -> tuple:
  """Restores only `item` of a saved train state as numpy arrays, without knowing the rest of it.

  For export tools: the optimizer state and shardings need not be rebuilt, and the arrays come back
  on the host regardless of how many devices wrote them.

  Returns:
    (params, step): the nested dict of numpy arrays and the step it came from (newest if None).
  Raises:
    CheckpointError: no checkpoint, no such step, no `item` in it, or damaged files.
  """
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise CheckpointError(f"no checkpoints in {directory!r}; is --workdir the folder of a training run?")
  with _absl_errors_only():  # orbax warns that a read-only manager is read-only, twice per restore
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    manager = ocp.CheckpointManager(directory, options=options, item_handlers=ocp.PyTreeCheckpointHandler())
  with manager:
    steps = manager.all_steps()
    if not steps:
      raise CheckpointError(f"no complete checkpoint in {directory!r}")
    step = max(steps) if step is None else int(step)
    if step not in steps:
      raise CheckpointError(f"no checkpoint for step {step} in {directory!r}; saved steps: {sorted(steps)}")
    try:
      tree = manager.item_metadata(step).tree
    except Exception as e:
      raise _corrupt(manager, step, e) from e
    if not isinstance(tree, dict) or item not in tree:
      found = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
      raise CheckpointError(f"checkpoint step {step} in {directory!r} has no {item!r}; it holds {found}")
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree[item])
    try:
      restored = manager.restore(step, args=ocp.args.PyTreeRestore(
          item={item: tree[item]}, restore_args={item: restore_args}, partial_restore=True))
    except Exception as e:
      raise _corrupt(manager, step, e) from e
  return restored[item], int(step)
