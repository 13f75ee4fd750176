"""The run folder: checked writable before any work, locked against a second run, config recorded.

A run's `--workdir` holds config.json, checkpoints/, TensorBoard events and exports. Three things go
wrong with it in practice and each is caught here, before minutes of compilation are spent:
  * the folder cannot be created or written (a typo, a read-only mount, a path that is a file);
  * a second run is started on the same folder and both write checkpoints (they would interleave);
  * a run is resumed with a config whose parameter shapes or meaning differ from the saved one (orbax
    would fail deep in a restore, or worse, silently continue a different experiment).
"""

import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import os
import socket
import time
from typing import Any, Optional, Sequence

CONFIG_FILE = "config.json"

# Fields added after runs were saved, with the value that means what those runs did: a saved config
# without one resumes (and is compared, by the benchmark's reuse check) as if it had this value.
ADDED_FIELDS = {"nerf.random_background_prob": 0.0, "nerf.background_saturation": 1.0,
                "nerf.coarse_to_fine_steps": 0, "nerf.coarse_to_fine_start": 2.0,
                "reg.coverage": 0.0, "reg.coverage_max": 0.6,
                "reg.entropy": 0.0, "reg.entropy_start": 0, "reg.entropy_ramp_steps": 0,
                "reg.distortion": 0.0, "reg.distortion_start": 0, "reg.distortion_ramp_steps": 0,
                "sds.num_samples": 1, "optim.ema_decay": 0.0, "sds.denoise_weight": 1.0,
                "prior.ensemble": []}

# Fields that fix parameter shapes or what the run means. A prefix ("nerf") covers its whole section.
# Everything else (num_steps, log.*, optim learning rates, ...) may change when a run is resumed.
FROZEN_KEYS = (
    "prompt",
    "negative_prompt",
    "distill",
    "nerf",
    "prior.model",
    "prior.ensemble",
    "prior.latent_render",
    "optim.optimizer",  # the optimizer state's structure
    "optim.ema_decay",  # whether the state holds a moving average, and what the exports are
)


# Fields that do not change what a run trains: its logging and exports, whether the prior's files may be
# fetched or converted, and how training renders are chunked for memory (the same values either way).
# Every other field does: a finished run stands for its config only if they all match.
UNTRAINED_KEYS = ("log", "export", "prior.local_files_only", "prior.from_pt", "render.chunk")

# The subfolders of a diffusers-layout prior that the loader reads (prior/checkpoint.py): two local
# folders holding the same bytes in these are the same prior, whatever their paths.
PRIOR_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class WorkdirError(ValueError):
  """The workdir cannot be used: not writable, locked by another run, or holds an incompatible run."""


def _is_remote(workdir: str) -> bool:
  return "://" in str(workdir)


def prepare_workdir(workdir: str) -> str:
  """Creates `workdir` if needed and proves it is writable; returns its absolute path.

  Remote paths (gs://...) are returned unchanged: orbax and TensorBoard write to them through their
  own file systems, and checking them would need cloud credentials here.

  Raises:
    WorkdirError: naming the path and the reason (a file is in the way, permission denied, ...).
  """
  if not workdir:
    raise WorkdirError("--workdir is empty; pass a folder for checkpoints and outputs")
  if _is_remote(workdir):
    return str(workdir)
  path = os.path.abspath(os.path.expanduser(str(workdir)))
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"--workdir {path!r} exists and is not a folder; pass a folder path")
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f".write_probe.{socket.gethostname()}.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(
        f"--workdir {path!r} cannot be created or written ({e.strerror or e}); "
        "choose a folder you can write to") from e
  return path


@dataclasses.dataclass
class WorkdirLock:
  """An exclusive lock on a workdir, held through an open file descriptor.

  The lock is an flock on the open file, so the OS drops it when the process exits for any reason
  (crash, kill -9, preemption): a dead run never blocks a new one. The pid and host written inside
  are only for the error message a second run prints.
  """
  path: str
  fd: Optional[int]

  def release(self) -> None:
    """Releases the lock (idempotent); the lock file stays, unlocked."""
    if self.fd is not None:
      fcntl.flock(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = None

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _read_owner(path: str) -> dict:
  try:
    with open(path) as f:
      return json.loads(f.read() or "{}")
  except (OSError, ValueError):
    return {}


def acquire_lock(workdir: str, process_index: int = 0) -> WorkdirLock:
  """Locks `workdir` for this process; refuses while another live run holds it.

  Each process of a multi-process run locks its own file (`.lock.process<i>`), so the N processes of
  one run coexist while a second run's process i collides with the first run's process i. Remote
  workdirs get a no-op lock (object stores have no flock).

  Raises:
    WorkdirError: another live process holds the lock; the message names its pid and host.
  """
  if _is_remote(workdir):
    return WorkdirLock(path=str(workdir), fd=None)
  path = os.path.join(prepare_workdir(workdir), f".lock.process{int(process_index)}")
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno not in (errno.EAGAIN, errno.EACCES):  # a file system without flock (ENOLCK, ENOSYS, ...)
      return _acquire_by_pid(path)
    owner = _read_owner(path)
    raise WorkdirError(
        f"--workdir {workdir!r} is in use by another run (pid {owner.get('pid', '?')} on host "
        f"{owner.get('host', '?')}, started {owner.get('started', '?')}). Wait for it to finish, stop it, "
        "or pass a different --workdir.") from e
  _write_owner(fd)
  return WorkdirLock(path=path, fd=fd)


def _write_owner(fd: int) -> None:
  owner = {"pid": os.getpid(), "host": socket.gethostname(),
           "started": time.strftime("%Y-%m-%d %H:%M:%S")}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(owner).encode(), 0)
  os.fsync(fd)


def _acquire_by_pid(path: str) -> WorkdirLock:
  """Lock for file systems without flock: refuse only if the recorded pid is alive on this host."""
  owner = _read_owner(path)
  if (owner.get("host") == socket.gethostname() and owner.get("pid") not in (None, os.getpid())
      and _pid_alive(int(owner["pid"]))):
    raise WorkdirError(
        f"{os.path.dirname(path)!r} is in use by pid {owner['pid']} on this host; stop it or pass a "
        "different --workdir")
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  _write_owner(fd)
  os.close(fd)
  return WorkdirLock(path=path, fd=None)


def config_dict(config: Any) -> dict:
  """The config as plain JSON values (tuples become lists), as it reads back from config.json."""
  if isinstance(config, dict):
    return json.loads(json.dumps(config, sort_keys=True, default=str))
  return json.loads(config.to_json_best_effort(sort_keys=True))


def save_config(workdir: str, config: Any) -> str:
  """Writes workdir/config.json (sorted keys), atomically; returns its path.

  The write goes to a temporary file renamed into place, so a reader (or a crash) never sees half a
  file, and concurrent writers from several processes of one run are harmless.
  """
  path = os.path.join(str(workdir), CONFIG_FILE)
  text = json.dumps(config_dict(config), sort_keys=True, indent=2) + "\n"
  tmp = f"{path}.tmp.{socket.gethostname()}.{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path


def load_config(workdir: str) -> Optional[dict]:
  """The saved config.json of `workdir` as a dict, or None when there is none.

  A field of ADDED_FIELDS that the file lacks (saved before the field existed) is filled in with the
  value that means what that run did, so code reading the config needs no defaults of its own.
  """
  path = os.path.join(str(workdir), CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      config = json.load(f)
    except ValueError as e:
      raise WorkdirError(f"{path!r} is not valid JSON ({e}); restore it or pass a new --workdir") from e
  for dotted, value in ADDED_FIELDS.items():
    *parents, name = dotted.split(".")
    section = config
    for part in parents:
      section = section.setdefault(part, {})
    section.setdefault(name, value)
  return config


def _flatten(tree: Any, prefix: str = "") -> dict:
  if not isinstance(tree, dict):
    return {prefix: tree}
  flat = {}
  for k, v in tree.items():
    flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
  return flat


def _under(name: str, prefixes: Sequence[str]) -> bool:
  return any(name == k or name.startswith(k + ".") for k in prefixes)


def _prior_files(folder: str) -> list:
  """Sorted relative paths of the files under `folder`'s PRIOR_PARTS."""
  found = []
  for part in PRIOR_PARTS:
    for root, _, files in os.walk(os.path.join(folder, part)):
      found.extend(os.path.relpath(os.path.join(root, name), folder) for name in files)
  return sorted(found)


@functools.lru_cache(maxsize=16)
def _digest(folder: str, stamp: tuple) -> str:
  """sha256 over names and bytes; `stamp` (names, sizes, mtimes) keys the cache, so an edit re-reads."""
  digest = hashlib.sha256()
  for name, _, _ in stamp:
    with open(os.path.join(folder, name), "rb") as f:
      digest.update(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
  return digest.hexdigest()


def prior_digest(model: Any) -> Optional[str]:
  """sha256 over the files of a local prior folder's PRIOR_PARTS (names and bytes), or None when
  `model` is not a local folder holding any of them (a hub id, a missing path)."""
  if not isinstance(model, str) or not os.path.isdir(model):
    return None
  folder = os.path.realpath(model)
  stamp = []
  for name in _prior_files(folder):
    st = os.stat(os.path.join(folder, name))
    stamp.append((name, st.st_size, st.st_mtime_ns))
  return _digest(folder, tuple(stamp)) if stamp else None


def _same_prior(a: Any, b: Any) -> bool:
  digest = prior_digest(a)
  return digest is not None and digest == prior_digest(b)


def _same_priors(name: str, a: Any, b: Any) -> bool:
  """Whether prior.model (one prior) or prior.ensemble (a list of them) name the same files."""
  if name == "prior.model":
    return _same_prior(a, b)
  if name == "prior.ensemble" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    return all(x == y or _same_prior(x, y) for x, y in zip(a, b))
  return False


def config_differences(old: dict, new: dict, keys: Optional[Sequence[str]] = FROZEN_KEYS,
                       exclude: Sequence[str] = ()) -> list:
  """[(field, old, new)] for every field under `keys` (None: every field) and not under `exclude` whose
  value differs ("<absent>" if missing).

  A field of ADDED_FIELDS missing from a config (one saved before it existed) reads as its old behaviour.
  prior.model given as two local folders with the same prior files (prior_digest) is the same prior: a
  run folder moved with a re-cloned repo, or trained on a copy of the weights, still compares equal
  (prior.ensemble's folders the same, one by one).
  """
  old_flat, new_flat = dict(ADDED_FIELDS, **_flatten(old)), dict(ADDED_FIELDS, **_flatten(new))
  missing = "<absent>"
  diffs = []
  for name in sorted(set(old_flat) | set(new_flat)):
    if (keys is not None and not _under(name, keys)) or _under(name, exclude):
      continue
    a, b = old_flat.get(name, missing), new_flat.get(name, missing)
    if a != b and not _same_priors(name, a, b):
      diffs.append((name, a, b))
  return diffs


def training_differences(old: dict, new: Any) -> list:
  """[(field, old, new)] for every field that changes what a run trains (all but UNTRAINED_KEYS) where
  the saved config `old` and the config `new` differ."""
  return config_differences(old, config_dict(new), keys=None, exclude=UNTRAINED_KEYS)


def check_config_compatible(workdir: str, config: Any, keys: Sequence[str] = FROZEN_KEYS) -> None:
  """Refuses to resume a run in `workdir` whose saved config differs from `config` in `keys`.

  Does nothing when the workdir has no config.json (a fresh run).

  Raises:
    WorkdirError: listing each differing field with its saved and new value.
  """
  old = load_config(workdir)
  if old is None:
    return
  diffs = config_differences(old, config_dict(config), keys)
  if diffs:
    lines = "\n".join(f"  {name}: {a!r} (saved) -> {b!r} (now)" for name, a, b in diffs)
    raise WorkdirError(
        f"--workdir {workdir!r} holds a run with a different config; these fields cannot change when "
        f"resuming:\n{lines}\nPass a new --workdir to start a fresh run, or restore these values.")
