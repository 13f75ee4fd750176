"""average_priors: the averaged weights are the weighted mean of the two priors', load through the
project's loader, keep both lineages, and incompatible priors or an occupied --out are refused first."""

import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import average_priors
from dreamfusion_jax.shapes import prior_model


def _export(root, name, seed, tok_dir, info):
  _, spec, _, _, params = helpers.tiny_prior(tok_dir, seed)
  out = str(root / name)
  prior_model.save_diffusers(out, spec, params, tok_dir, info, dtype=jnp.float16)
  return out


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
  root = tmp_path_factory.mktemp("average")
  tok_dir = str(root / "tok")
  first = _export(root, "first", 0, tok_dir, {"step": 100, "lr": 1e-3, "spec": {"channels": [32, 32]},
                                               "resolution": 32})
  second = _export(root, "second", 1, tok_dir, {"step": 50, "seed": 4, "warm_start": {"step": 100}})
  os.makedirs(os.path.join(first, "judge"))
  with open(os.path.join(first, "judge", "judge.json"), "w") as f:
    f.write("{}")
  return dict(root=root, tok=tok_dir, first=first, second=second)


def _load(folder):
  return stable_diffusion.load_prior(folder, "float32", local_files_only=True)[1]


def test_average_is_the_weighted_mean_and_loads(priors):
  out = str(priors["root"] / "soup")
  average_priors.main([priors["first"], priors["second"], "--out", out, "--weight", "0.25"])
  a, b, c = _load(priors["first"]), _load(priors["second"]), _load(out)
  for part in ("unet", "text_encoder"):
    leaves = [jax.tree_util.tree_leaves(p[part]) for p in (a, b, c)]
    assert len(leaves[0]) == len(leaves[2]) > 10
    moved = 0
    for x, y, z in zip(*leaves):
      want = (0.75 * np.asarray(x, np.float32) + 0.25 * np.asarray(y, np.float32)).astype(np.float16)
      np.testing.assert_array_equal(np.asarray(z), want.astype(np.float32))
      moved += not np.array_equal(np.asarray(x), np.asarray(y))
    assert moved > 0  # the two inits differ, so the check above is not comparing a prior with itself
  with open(os.path.join(out, "training.json")) as f:
    info = json.load(f)
  assert info["step"] == 0 and info["resolution"] == 32 and info["spec"] == {"channels": [32, 32]}
  assert info["average"]["weight"] == 0.25
  assert info["average"]["first"] == {"step": 100, "lr": 1e-3, "weights": priors["first"]}
  assert info["average"]["second"] == {"step": 50, "seed": 4, "warm_start": {"step": 100},
                                       "weights": priors["second"]}
  assert "lr" not in info  # the first's training run is lineage now, not this folder's
  assert os.path.isfile(os.path.join(out, "judge", "judge.json"))  # other folders come from the first
  assert not [n for n in os.listdir(priors["root"]) if n.startswith(".average_priors_")]


def test_weight_zero_is_the_first_prior(priors):
  out = str(priors["root"] / "zero")
  average_priors.average_priors(priors["first"], priors["second"], out, weight=0.0)
  for name in average_priors.WEIGHT_FILES:
    with open(os.path.join(out, name), "rb") as f, open(os.path.join(priors["first"], name), "rb") as g:
      assert f.read() == g.read()


@pytest.mark.parametrize("case", ["occupied_out", "unwritable_out", "bad_weight", "other_architecture",
                                  "other_tokenizer", "not_an_export"])
def test_refusals_name_the_problem_and_write_nothing(priors, case, capsys):
  root = priors["root"]
  second, out, weight, match = priors["second"], str(root / f"out_{case}"), "0.5", None
  if case == "occupied_out":
    os.makedirs(out)
    with open(os.path.join(out, "keep.txt"), "w") as f:
      f.write("mine")
    match = "already exists"
  elif case == "unwritable_out":  # under a plain file (permissions alone do not stop root)
    blocker = str(root / "a_file")
    with open(blocker, "w") as f:
      f.write("")
    out, match = os.path.join(blocker, "soup"), "cannot be written"
  elif case == "bad_weight":
    weight, match = "1.5", r"--weight must be in \[0, 1\]"
  elif case == "other_architecture":
    second = str(root / "wide")  # the second prior with a wider UNet in its config
    shutil.copytree(priors["second"], second)
    path = os.path.join(second, "unet", "config.json")
    with open(path) as f:
      config = json.load(f)
    config["block_out_channels"] = [32, 64]
    with open(path, "w") as f:
      json.dump(config, f)
    match = "unet/config.json differs"
  elif case == "other_tokenizer":
    second = str(root / "other_tok")  # the second prior itself, its vocabulary's first two ids swapped
    shutil.copytree(priors["second"], second)
    path = os.path.join(second, "tokenizer", "vocab.json")
    with open(path) as f:
      vocab = json.load(f)
    a, b = sorted(vocab, key=vocab.get)[:2]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    with open(path, "w") as f:
      json.dump(vocab, f)
    match = "tokenizer/ differs"
  else:
    second, match = str(root / "tok"), "is missing"
  with pytest.raises(SystemExit):
    average_priors.main([priors["first"], second, "--out", out, "--weight", weight])
  assert re.search(match, capsys.readouterr().err)
  if case == "occupied_out":
    assert os.listdir(out) == ["keep.txt"]
  else:
    assert not os.path.exists(out)
  assert not [n for n in os.listdir(root) if n.startswith(".average_priors_")]
