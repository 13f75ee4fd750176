"""Finding and reading prior weights in the diffusers folder layout, with one clear error.

Layout (what `huggingface-cli download` of a Stable Diffusion repo gives, and what `save_prior` writes):
  tokenizer/{vocab.json, merges.txt}     text_encoder/{config.json, weights}
  unet/{config.json, weights}            vae/{config.json, weights}   (latent priors only)
  scheduler/scheduler_config.json        model_index.json             (optional: lists the components)

Weights are read from Flax msgpack or safetensors, neither of which can run code; PyTorch pickles
(.bin) are converted only with from_pt=True. The folder is checked file by file before anything heavy
happens, so a missing piece is one PriorNotFoundError that names it, not a traceback from a library.
"""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from diffusers.models.modeling_flax_pytorch_utils import rename_key, rename_key_and_reshape_tensor
from flax.core import unfreeze
from flax.traverse_util import flatten_dict, unflatten_dict

from dreamfusion_jax.prior.errors import HOW_TO_GET, PriorNotFoundError  # re-exported

# (Flax msgpack, safetensors, PyTorch pickle) file names per library, in order of preference.
DIFFUSERS_WEIGHTS = (
    "diffusion_flax_model.msgpack", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"
)
TRANSFORMERS_WEIGHTS = ("flax_model.msgpack", "model.safetensors", "pytorch_model.bin")
MODEL_FOLDERS = {"unet": DIFFUSERS_WEIGHTS, "vae": DIFFUSERS_WEIGHTS, "text_encoder": TRANSFORMERS_WEIGHTS}
TOKENIZER_FILES = ("vocab.json", "merges.txt")
SCHEDULER_FILE = os.path.join("scheduler", "scheduler_config.json")

def _fail(model, folder, problems):
  lines = "\n".join(f"  - {p}" for p in problems)
  where = f"'{model}'" if folder is None or str(folder) == str(model) else f"'{model}' (looked in {folder})"
  raise PriorNotFoundError(f"Cannot load the diffusion prior from {where}:\n{lines}\n{HOW_TO_GET}")


def _hub_patterns(files, from_pt):
  """Files of a hub listing worth downloading: configs, tokenizer, the best weights per component."""
  patterns = ["model_index.json", SCHEDULER_FILE, "tokenizer/*"]
  for sub, names in MODEL_FOLDERS.items():
    patterns.append(f"{sub}/config.json")
    usable = names if from_pt else names[:2]
    best = next((n for n in usable if f"{sub}/{n}" in files), None)
    if best is not None:
      patterns.append(f"{sub}/{best}")
  return patterns


def resolve_folder(model, local_files_only=False, from_pt=False, revision=None):
  """A local folder as is; a hub id → its snapshot folder (downloaded unless local_files_only)."""
  model = os.path.expanduser(str(model))
  if os.path.isdir(model):
    return model
  parts = model.split("/")
  if model.startswith((".", "/")) or len(parts) != 2 or not all(parts):
    _fail(model, None, ["no such folder (and not a hub id of the form owner/name)"])
  import huggingface_hub  # pylint: disable=g-import-not-at-top

  def summary(e):
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"

  reasons = []
  if not local_files_only:
    try:
      files = set(huggingface_hub.list_repo_files(model, revision=revision))
      return huggingface_hub.snapshot_download(
          model, revision=revision, allow_patterns=_hub_patterns(files, from_pt)
      )
    except Exception as e:  # pylint: disable=broad-except  # offline, unknown repo, gated, ...
      reasons.append(f"hub download failed ({summary(e)})")
  try:  # offline or HF_HUB_OFFLINE=1: a snapshot already in the local cache still works
    return huggingface_hub.snapshot_download(model, revision=revision, local_files_only=True)
  except Exception as e:  # pylint: disable=broad-except
    reasons.append(f"not in the local hub cache ({summary(e)})")
  _fail(model, None, ["not a local folder; " + "; ".join(reasons)])


def _needs_vae(folder):
  """True if model_index.json lists a VAE, or (without one) if the UNet predicts 4-channel latents."""
  index = os.path.join(folder, "model_index.json")
  if os.path.isfile(index):
    with open(index) as f:
      entry = json.load(f).get("vae")
    return bool(entry) and entry[0] is not None
  unet_config = os.path.join(folder, "unet", "config.json")
  if os.path.isfile(unet_config):
    with open(unet_config) as f:
      unet = json.load(f)  # out_channels: a pixel UNet may take camera maps besides its 3 channels
      return unet.get("out_channels", unet.get("in_channels", 4)) != 3
  return False


def check_folder(folder, model, from_pt=False, require_vae=None):
  """Checks every component's files; returns {component: path or (path, weights file)}.

  Raises PriorNotFoundError listing every missing piece at once.
  """
  needs_vae = _needs_vae(folder) if require_vae is None else bool(require_vae)
  found, problems = {}, []
  for sub, names in MODEL_FOLDERS.items():
    path = os.path.join(folder, sub)
    if sub == "vae" and not needs_vae:
      continue
    if not os.path.isdir(path):
      why = " (a latent prior: the UNet works on VAE latents)" if sub == "vae" else ""
      problems.append(f"{sub}/: folder missing{why}")
      continue
    if not os.path.isfile(os.path.join(path, "config.json")):
      problems.append(f"{sub}/config.json: missing")
    present = [n for n in names if os.path.isfile(os.path.join(path, n))]
    usable = [n for n in present if from_pt or not n.endswith(".bin")]
    if not usable:
      if present:
        problems.append(f"{sub}/: only PyTorch pickle weights ({present[0]}); pass from_pt=True (torch)")
      else:
        problems.append(f"{sub}/: no weights (expected {names[0]} or {names[1]})")
      continue
    if usable[0].endswith(".bin") and importlib.util.find_spec("torch") is None:
      problems.append(f"{sub}/{usable[0]}: converting PyTorch weights needs torch, which is not installed")
    found[sub] = (path, usable[0])
  tok = os.path.join(folder, "tokenizer")
  missing_tok = [n for n in TOKENIZER_FILES if not os.path.isfile(os.path.join(tok, n))]
  if missing_tok:
    problems.append(f"tokenizer/: missing {', '.join(missing_tok)}")
  if not os.path.isfile(os.path.join(folder, SCHEDULER_FILE)):
    problems.append(f"{SCHEDULER_FILE}: missing")
  if problems:
    _fail(model, folder, problems)
  found["tokenizer"] = tok
  found["scheduler"] = os.path.join(folder, SCHEDULER_FILE)
  return found


def _check_complete(params, shapes, path):
  """ValueError if loaded params miss keys or disagree in shape with the module's own init."""
  got, want = flatten_dict(unfreeze(params)), flatten_dict(unfreeze(shapes))
  missing = sorted("/".join(k) for k in want.keys() - got.keys())
  if missing:
    raise ValueError(f"incomplete weights in {path}: {len(missing)} parameters missing, e.g. {missing[:3]}")
  wrong = sorted("/".join(k) for k in want if tuple(got[k].shape) != tuple(want[k].shape))
  if wrong:
    raise ValueError(f"weights in {path} do not match its config.json: shapes differ for {wrong[:3]}")
  return unflatten_dict({k: got[k] for k in want})


def _convert_safetensors(path, shapes):
  """PyTorch-named safetensors → Flax params with diffusers' own renaming rules (no torch needed)."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top

  flat_shapes = flatten_dict(unfreeze(shapes))
  state = {}
  with safe_open(path, framework="flax") as f:
    for name in f.keys():
      key = tuple(rename_key(name).split("."))
      key, tensor = rename_key_and_reshape_tensor(key, f.get_tensor(name), flat_shapes)
      if key in flat_shapes:
        state[key] = tensor
  return unflatten_dict(state)


def on_default_device(tree):
  """`tree`'s arrays, uncommitted, on the default device (jax.devices()[0]).

  diffusers' `from_pretrained` commits every weight it loads to the host CPU (`jax.device_put(x,
  jax.local_devices(backend="cpu")[0])`; transformers' does too with `_do_init=False`, as
  load_text_encoder calls it), and a jitted function given a committed array runs on that array's
  device, whatever the default is. On a GPU machine every program built on loaded weights alone then
  ran on the host's cores: train_prior continuing the shipped prior on an H200 machine took ~2 s a step
  at batch 96 (its first compilations ~26 s, a CPU compiler's time), where the step's parts take ~18 ms
  on the chip. Uncommitted, the weights go where the other inputs are: the default device, or the mesh
  `distributed.replicate` puts them on. Through numpy, because jax.device_put keeps a committed array
  committed.
  """
  return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)) if isinstance(x, jax.Array) else x, tree)


def load_diffusers_model(cls, found, dtype):
  """(module, params) of a diffusers Flax model class from (folder, weights file name)."""
  path, weights = found
  if weights.endswith(".safetensors"):
    module = cls.from_config(cls.load_config(path), dtype=dtype)
    shapes = jax.eval_shape(module.init_weights, jax.random.PRNGKey(0))
    params = _convert_safetensors(os.path.join(path, weights), shapes)
  else:
    module, params = cls.from_pretrained(path, dtype=dtype, from_pt=weights.endswith(".bin"))
    shapes = jax.eval_shape(module.init_weights, jax.random.PRNGKey(0))
  return module, _check_complete(params, shapes, path)


def load_text_encoder(cls, found, dtype):
  """(model wrapper, params) of a transformers Flax text encoder from (folder, weights file name)."""
  path, weights = found
  if weights.endswith(".msgpack"):
    model, params = cls.from_pretrained(path, dtype=dtype, _do_init=False)
  else:
    # transformers converts PyTorch-named weights against a randomly initialised copy (_do_init=True).
    model = cls.from_pretrained(path, dtype=dtype, from_pt=weights.endswith(".bin"))
    params = model.params
  shapes = jax.eval_shape(lambda rng: model.init_weights(rng, (1, 1)), jax.random.PRNGKey(0))
  return model, _check_complete(params, shapes, path)
