"""launch/camera_prior.sh runs the recipe that the shipped camera prior's training.json records."""

import json
import os
import shlex
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "camera_prior.sh")
CAMERA_WEIGHTS = os.path.join(REPO, "dreamfusion_jax", "shapes", "camera_weights")
WEIGHTS = os.path.join(REPO, "dreamfusion_jax", "shapes", "weights")


def _flag(call, name, count=1):
  i = call.index(name)
  values = call[i + 1:i + 1 + count]
  return values[0] if count == 1 else values


def _assert_recipe(call, stage):
  """The flags every stage shares with the training.json record of that stage."""
  assert call[:2] == ["-m", "dreamfusion_jax.shapes.train_prior"]
  assert int(_flag(call, "--seed")) == stage["seed"] and int(_flag(call, "--batch")) == stage["batch"]
  assert float(_flag(call, "--lr")) == stage["lr"]
  assert [int(w) for w in _flag(call, "--shape-weights", 8)] == stage["shape_weights"]
  assert _flag(call, "--cameras") == stage["camera_phases"][0]["cameras"]


def test_the_script_runs_the_recipe_its_weights_record(tmp_path):
  log = tmp_path / "calls"
  fake = tmp_path / "python"  # records each train_prior call instead of training for two hours
  fake.write_text(f"#!/bin/bash\nprintf '%q ' \"$@\" >> {log}\necho >> {log}\n")
  fake.chmod(0o755)
  done = subprocess.run(["bash", SCRIPT, str(tmp_path / "work")], capture_output=True, text=True,
                        timeout=60, env={**os.environ, "PYTHON": str(fake)}, check=False)
  assert done.returncode == 0, done.stderr
  first, second, third = [shlex.split(line) for line in log.read_text().splitlines()]
  with open(os.path.join(CAMERA_WEIGHTS, "training.json")) as f:
    maps = json.load(f)  # the third stage; the second under warm_start, the text-only prior under that
  with open(os.path.join(WEIGHTS, "training.json")) as f:
    shipped = json.load(f)
  vector = maps["warm_start"]
  for call in (first, second):
    _assert_recipe(call, vector)
    # Started from the shipped text-only prior: the lineage its training.json keeps is that prior's.
    assert _flag(call, "--init-from-weights") == "dreamfusion_jax/shapes/weights"
    assert int(_flag(call, "--camera-dim")) == maps["spec"]["camera_dim"] and "--camera-maps" not in call
  assert (vector["warm_start"]["step"], vector["warm_start"]["loss"]) == (shipped["step"], shipped["loss"])
  phase = vector["camera_lr_phases"][0]
  assert int(_flag(first, "--steps")) == phase["from_step"] and "--camera-lr-scale" not in first
  assert "--resume" in second and float(_flag(second, "--camera-lr-scale")) == phase["camera_lr_scale"]
  assert int(_flag(second, "--steps")) == vector["step"]
  # The third stage continues the second's export, with the maps, from step 0 of its own workdir.
  _assert_recipe(third, maps)
  assert maps["spec"]["camera_maps"] and "--camera-maps" in third and "--resume" not in third
  assert _flag(third, "--init-from-weights") == _flag(second, "--out")
  assert int(_flag(third, "--camera-dim")) == maps["spec"]["camera_dim"]
  assert float(_flag(third, "--camera-lr-scale")) == maps["camera_lr_phases"][0]["camera_lr_scale"]
  assert int(_flag(third, "--steps")) == maps["step"]
  assert _flag(third, "--workdir") not in (_flag(first, "--workdir"), _flag(second, "--workdir"))


def test_usage_without_a_workdir():
  done = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=60, check=False)
  assert done.returncode != 0 and "usage" in done.stderr
