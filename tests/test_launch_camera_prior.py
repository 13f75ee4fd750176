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


def test_the_script_runs_the_recipe_its_weights_record(tmp_path):
  log = tmp_path / "calls"
  fake = tmp_path / "python"  # records each train_prior call instead of training for an hour
  fake.write_text(f"#!/bin/bash\nprintf '%q ' \"$@\" >> {log}\necho >> {log}\n")
  fake.chmod(0o755)
  done = subprocess.run(["bash", SCRIPT, str(tmp_path / "work")], capture_output=True, text=True,
                        timeout=60, env={**os.environ, "PYTHON": str(fake)}, check=False)
  assert done.returncode == 0, done.stderr
  first, second = [shlex.split(line) for line in log.read_text().splitlines()]
  with open(os.path.join(CAMERA_WEIGHTS, "training.json")) as f:
    info = json.load(f)
  with open(os.path.join(WEIGHTS, "training.json")) as f:
    shipped = json.load(f)
  for call in (first, second):
    assert call[:2] == ["-m", "dreamfusion_jax.shapes.train_prior"]
    assert int(_flag(call, "--seed")) == info["seed"] and int(_flag(call, "--batch")) == info["batch"]
    assert float(_flag(call, "--lr")) == info["lr"]
    assert int(_flag(call, "--camera-dim")) == info["spec"]["camera_dim"]
    assert [int(w) for w in _flag(call, "--shape-weights", 8)] == info["shape_weights"]
    assert _flag(call, "--cameras") == info["camera_phases"][0]["cameras"]
    # Started from the shipped text-only prior: the lineage its training.json keeps is that prior's.
    assert _flag(call, "--init-from-weights") == "dreamfusion_jax/shapes/weights"
  assert (info["warm_start"]["step"], info["warm_start"]["loss"]) == (shipped["step"], shipped["loss"])
  phase = info["camera_lr_phases"][0]
  assert int(_flag(first, "--steps")) == phase["from_step"] and "--camera-lr-scale" not in first
  assert "--resume" in second and float(_flag(second, "--camera-lr-scale")) == phase["camera_lr_scale"]
  assert int(_flag(second, "--steps")) == info["step"]


def test_usage_without_a_workdir():
  done = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=60, check=False)
  assert done.returncode != 0 and "usage" in done.stderr
