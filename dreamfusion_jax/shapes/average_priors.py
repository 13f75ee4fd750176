r"""One prior from two: the weighted average of two exported priors' weights (a "model soup").

  python -m dreamfusion_jax.shapes.average_priors dreamfusion_jax/shapes/weights runs/ft/export \
      --out runs/soup [--weight 0.5]

Fine-tunes of one model stay in one basin of the loss, and the average of their weights is often better
than either (Wortsman et al. 2022, "Model soups": fine-tunes of one CLIP, uniformly averaged). The priors
must be train_prior exports with the same architecture and tokenizer (a fine-tune by --init-from-weights
is one); the result is FIRST * (1 - weight) + SECOND * weight, computed in float32 and stored in the
first's dtype, in the same diffusers layout. Everything else (tokenizer/, scheduler/, configs, any
other folder such as the shipped judge/) is copied from FIRST; training.json keeps both lineages under
"average". OUT must not exist yet (or be empty): nothing is overwritten, and a failed run leaves nothing.
"""

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile

import numpy as np
from flax import serialization
import jax

from dreamfusion_jax.shapes import train_prior

# The weight files of the diffusers layout (diffusers' and transformers' Flax names) that get averaged.
WEIGHT_FILES = ("unet/diffusion_flax_model.msgpack", "text_encoder/flax_model.msgpack")
# Files that must match for the two priors to be one architecture reading one vocabulary.
CONFIG_FILES = ("unet/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json")


def _config(path: str) -> dict:
  with open(path) as f:
    return {k: v for k, v in json.load(f).items() if not k.startswith("_")}  # not the library versions


def check_compatible(first: str, second: str) -> None:
  """Raises ValueError naming the file that differs or is missing; reads no weights."""
  for folder in (first, second):
    for name in WEIGHT_FILES + CONFIG_FILES + ("training.json",):
      if not os.path.isfile(os.path.join(folder, name)):
        raise ValueError(f"{os.path.join(folder, name)} is missing: both priors must be train_prior "
                         "exports (python -m dreamfusion_jax.shapes.train_prior ... writes them)")
  for name in CONFIG_FILES:
    if _config(os.path.join(first, name)) != _config(os.path.join(second, name)):
      raise ValueError(f"{name} differs between {first} and {second}: the priors are not one "
                       "architecture, so their weights cannot be averaged")
  tok_a, tok_b = os.path.join(first, "tokenizer"), os.path.join(second, "tokenizer")
  listing = lambda d: sorted(os.listdir(d)) if os.path.isdir(d) else []
  names = listing(tok_a)
  if not names or names != listing(tok_b) or filecmp.cmpfiles(tok_a, tok_b, names, shallow=False)[0] != names:
    raise ValueError(f"tokenizer/ differs between {first} and {second}: the same token ids would mean "
                     "other words to the two text encoders")


def average_trees(first, second, weight: float):
  """first * (1 - weight) + second * weight leaf by leaf (float32), cast back to first's dtypes."""
  if jax.tree_util.tree_structure(first) != jax.tree_util.tree_structure(second):
    raise ValueError("the two priors' weight trees differ in structure")

  def mix(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
      raise ValueError(f"a weight of shape {a.shape} in the first prior is {b.shape} in the second")
    return ((1.0 - weight) * a.astype(np.float32) + weight * b.astype(np.float32)).astype(a.dtype)

  return jax.tree_util.tree_map(mix, first, second)


def average_priors(first: str, second: str, out: str, weight: float = 0.5) -> None:
  """Writes the average of two exported priors to `out` (see the module docstring)."""
  if not 0.0 <= weight <= 1.0:
    raise ValueError(f"--weight must be in [0, 1] (the second prior's share), got {weight}")
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ValueError(f"--out {out} already exists and is not an empty folder; nothing is overwritten")
  check_compatible(first, second)
  parent = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".average_priors_", dir=parent)
  except OSError as e:
    raise ValueError(f"--out {out} cannot be written: {e}") from e
  try:
    tree = os.path.join(staging, "prior")
    shutil.copytree(first, tree)
    for name in WEIGHT_FILES:
      trees = [serialization.msgpack_restore(open(os.path.join(f, name), "rb").read()) for f in (first, second)]
      with open(os.path.join(tree, name), "wb") as f:
        f.write(serialization.msgpack_serialize(average_trees(*trees, weight)))
    infos = []
    for folder in (first, second):
      with open(os.path.join(folder, "training.json")) as f:
        infos.append(json.load(f))
    info = {k: v for k, v in infos[0].items() if k not in train_prior.LINEAGE_FIELDS}
    info.update(step=0, average={"weight": weight, "first": train_prior.lineage(infos[0], first),
                                 "second": train_prior.lineage(infos[1], second)},
                weights="first x %g + second x %g of two exports' weights (see average)" % (1 - weight, weight))
    with open(os.path.join(tree, "training.json"), "w") as f:
      json.dump(info, f, indent=2)
    if os.path.isdir(out):
      os.rmdir(out)  # empty, checked above
    os.replace(tree, out)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m dreamfusion_jax.shapes.average_priors", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("first", help="an exported prior folder (e.g. dreamfusion_jax/shapes/weights)")
  parser.add_argument("second", help="another, of the same architecture and tokenizer")
  parser.add_argument("--out", required=True, help="new folder for the averaged prior")
  parser.add_argument("--weight", type=float, default=0.5, help="the second prior's share (default 0.5)")
  args = parser.parse_args(argv)
  try:
    average_priors(args.first, args.second, args.out, args.weight)
  except ValueError as e:
    parser.error(str(e))
  print(f"wrote {args.out}: {args.first} x {1 - args.weight:g} + {args.second} x {args.weight:g}")


if __name__ == "__main__":
  main(sys.argv[1:])
