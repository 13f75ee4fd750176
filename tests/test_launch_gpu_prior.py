"""launch/gpu_prior.sh: its pins come from requirements.txt, and bad set-ups fail before any work."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "gpu_prior.sh")


def _run(*args, **env):
  return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60,
                        env={**os.environ, **env})


def test_every_carried_package_is_pinned_in_requirements():
  with open(SCRIPT) as f:
    packages = re.search(r"^PACKAGES=\((.*)\)$", f.read(), re.M).group(1).split()
  with open(os.path.join(REPO, "requirements.txt")) as f:
    pinned = {line.split("==")[0].strip().lower() for line in f if "==" in line}
  assert "diffusers" in packages and "transformers" in packages
  assert sorted(p for p in packages if p.lower() not in pinned) == []


def test_usage_without_a_command():
  result = _run()
  assert result.returncode == 2 and "usage" in result.stderr


def test_run_without_wheels_says_how_to_get_them(tmp_path):
  out = tmp_path / "out"
  result = _run("run", str(out), WHEELS=str(tmp_path / "no_wheels"))
  assert result.returncode == 2
  assert "launch/gpu_prior.sh wheels" in result.stderr
  assert not out.exists()  # nothing started


def test_run_refuses_a_folder_that_is_not_an_exported_prior(tmp_path):
  result = _run("run", str(tmp_path / "out"), INIT=str(tmp_path))
  assert result.returncode == 2 and "INIT=" in result.stderr and "unet" in result.stderr


def test_diagnose_needs_an_out_dir_and_the_wheels(tmp_path):
  result = _run("diagnose")
  assert result.returncode == 2 and "usage" in result.stderr and "diagnose OUT_DIR" in result.stderr
  out = tmp_path / "out"
  result = _run("diagnose", str(out), WHEELS=str(tmp_path / "no_wheels"))
  assert result.returncode == 2 and "launch/gpu_prior.sh wheels" in result.stderr
  assert not out.exists()  # nothing started


def test_bench_without_a_prior_from_run_says_so(tmp_path):
  result = _run("bench", str(tmp_path / "out"), WORK=str(tmp_path / "work"))
  assert result.returncode == 2 and "'bench' continues what 'run' began" in result.stderr
  assert not (tmp_path / "out").exists()


def test_train_prior_refuses_a_clock_cooldown_longer_than_the_run(tmp_path):
  for extra, field in ((["--max-minutes", "2", "--cooldown-minutes", "3"], "--cooldown-minutes"),
                       (["--cooldown-minutes", "1"], "--cooldown-minutes"),
                       (["--max-minutes", "4", "--cooldown-minutes", "1", "--cooldown-from", "50"],
                        "--cooldown-from and --cooldown-minutes")):
    result = subprocess.run(
        [sys.executable, "-m", "dreamfusion_jax.shapes.train_prior", "--workdir", str(tmp_path / "w"),
         *extra], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and field in result.stderr, result.stderr
    assert not (tmp_path / "w").exists()  # refused before any work
