"""evaluate.compare: paired means over the runs every config finished; launch/gpu_bench.sh's refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dreamfusion_jax.evaluate import compare

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "gpu_bench.sh")


def _row(prompt, seed, iou, geo=1.0):
  return dict(method="sds", prompt=prompt, seed=seed, steps=600, wall_time_s=1.0, r_color=1.0, r_geo=geo,
              iou=iou, haze=0.1)


def _write(path, rows, noise=True):
  with open(path, "w") as f:
    if noise:
      f.write("I1204 some absl log line\n  0%|  | 0/600\n")
    for r in rows:
      f.write(json.dumps(r) + "\n")


def test_means_are_paired_over_the_runs_every_config_finished(tmp_path):
  ref = [_row("a red cube", 0, 0.5), _row("a red cube", 1, 0.7), _row("a blue torus", 0, 0.3),
         _row("a green cone", 1, 0.9)]  # the cone: only the reference finished it
  cand = [_row("a red cube", 0, 0.6, geo=0.0), _row("a red cube", 1, 0.6), _row("a blue torus", 0, 0.5)]
  _write(tmp_path / "ref_0.log", ref[:2])
  _write(tmp_path / "ref_1.log", ref[2:])
  _write(tmp_path / "cand.log", cand)
  configs = {"ref": compare.read_rows(str(tmp_path / "ref_*.log")), "cand": compare.read_rows(str(tmp_path / "cand.log"))}
  ref_out, cand_out = compare.compare(configs)
  assert ref_out["runs"] == cand_out["runs"] == 3
  np.testing.assert_allclose(ref_out["iou"], (0.5 + 0.7 + 0.3) / 3)
  np.testing.assert_allclose(cand_out["iou"], (0.6 + 0.6 + 0.5) / 3)
  np.testing.assert_allclose(cand_out["r_geo"], 2 / 3)
  np.testing.assert_allclose(cand_out["per_seed"][0], (0.6 + 0.5) / 2)
  np.testing.assert_allclose(cand_out["per_seed"][1], 0.6)
  diffs = np.array([0.1, -0.1, 0.2])
  np.testing.assert_allclose(cand_out["diff"], diffs.mean())
  np.testing.assert_allclose(cand_out["diff_se"], diffs.std(ddof=1) / np.sqrt(3))
  assert (cand_out["higher"], cand_out["lower"]) == (2, 1)
  assert ref_out["diff"] == 0.0 and (ref_out["higher"], ref_out["lower"]) == (0, 0)
  table = compare.format_table([ref_out, cand_out])
  assert "| cand | 3 |" in table and "+0.067" in table


def test_where_the_objects_sit_is_compared_on_the_same_runs(tmp_path):
  ref = [dict(_row("a red cube", 0, 0.5), iou_best_position=0.6, offset=[0.0, 3 * 0.02857, 4 * 0.02857]),
         dict(_row("a blue torus", 0, 0.3), iou_best_position=0.4, offset=[0.0, 0.0, 0.0]),
         dict(_row("a green cone", 1, 0.0), iou_best_position=0.0, offset=None)]  # an empty field
  cand = [dict(r, iou_best_position=r["iou"], offset=[0.0, 0.0, 0.0]) for r in ref]
  old = [_row(r["prompt"], r["seed"], r["iou"]) for r in ref]  # saved before the position was scored
  _write(tmp_path / "ref.log", ref)
  _write(tmp_path / "cand.log", cand)
  _write(tmp_path / "old.log", old)
  configs = {n: compare.read_rows(str(tmp_path / f"{n}.log")) for n in ("ref", "cand", "old")}
  ref_out, cand_out, old_out = compare.compare(configs)
  np.testing.assert_allclose(ref_out["iou_pos"], (0.6 + 0.4 + 0.0) / 3)
  np.testing.assert_allclose(ref_out["offset"], (5 * 0.02857 + 0.0) / 2)  # a 3-4-5 move; the empty run left out
  np.testing.assert_allclose(cand_out["iou_pos"], cand_out["iou"])
  assert cand_out["offset"] == 0.0
  assert old_out["iou_pos"] is None and old_out["offset"] is None
  table = compare.format_table([ref_out, cand_out, old_out])
  assert "| 0.333 | 0.071 |" in table and table.splitlines()[-1].endswith("| - | - |")


def test_a_run_seen_twice_keeps_its_last_row(tmp_path):
  _write(tmp_path / "a.log", [_row("a red cube", 0, 0.1), _row("a red cube", 0, 0.4)])
  assert compare.read_rows(str(tmp_path / "a.log"))[("sds", "a red cube", 0)]["iou"] == 0.4


def test_bad_arguments_are_refused_by_name(tmp_path, capsys):
  _write(tmp_path / "a.log", [_row("a red cube", 0, 0.1)])
  _write(tmp_path / "b.log", [_row("a blue cube", 0, 0.1)])
  _write(tmp_path / "empty.log", [])
  for argv, words in (([f"ref={tmp_path}/a.log"], "at least one config"),
                      ([f"{tmp_path}/a.log", f"b={tmp_path}/b.log"], "NAME=GLOB"),
                      ([f"ref={tmp_path}/none*.log", f"b={tmp_path}/b.log"], "no file matches"),
                      ([f"ref={tmp_path}/empty.log", f"b={tmp_path}/b.log"], "no benchmark rows"),
                      ([f"ref={tmp_path}/a.log", f"b={tmp_path}/b.log"], "share no finished run")):
    assert compare.main(argv) == 2
    assert words in capsys.readouterr().err


def _bench(*args, **env):
  return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60,
                        env={**os.environ, **env}, cwd=REPO)


def test_gpu_bench_refuses_bad_names_and_missing_wheels_before_any_work(tmp_path):
  out = tmp_path / "out"
  result = _bench(str(out), "ok=", "bad name=--config.num_steps=5")
  assert result.returncode == 2 and "'bad name=--config.num_steps=5' is not NAME=OVERRIDES" in result.stderr
  result = _bench(str(out), "ok=", "ok=--config.num_steps=5")
  assert result.returncode == 2 and "the name ok is given twice" in result.stderr
  result = _bench(str(out), "ok=")
  assert result.returncode == 2 and "a reference config and at least one other" in result.stderr
  result = _bench(str(out), "a=", "b=", WHEELS=str(tmp_path / "no_wheels"))
  assert result.returncode == 2 and "launch/gpu_prior.sh wheels" in result.stderr
  assert not out.exists()


@pytest.mark.parametrize("override,words", [
    ("--config.sds.guidanc=3", "no field 'sds.guidanc'"),
    ("--config.sds.t_max=3", "config.sds.t_max = 3.0: must be in [0, 1]"),
    ("--seeds=3", "'--seeds=3' is not a --config.FIELD=VALUE override")])
def test_gpu_bench_checks_every_config_before_the_benchmark(override, words):
  script = f'source "{SCRIPT}"; PYTHON="{sys.executable}" check_configs ok=--config.sds.t_max=0.5 "bad={override}"'
  result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
  assert result.returncode == 2, result.stderr
  assert "config bad" in result.stderr and words in result.stderr and "nothing was run" in result.stderr
  ok = subprocess.run(["bash", "-c", f'source "{SCRIPT}"; PYTHON="{sys.executable}" check_configs '
                       'ok=--config.sds.t_max=0.5 "b=--config.num_steps=800 --config.nerf.density_bias=-3"'],
                      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert ok.returncode == 0, ok.stderr
