"""Two local processes (CPU collectives, coordinator on 127.0.0.1) train and agree exactly."""

import os
import socket
import subprocess
import sys

import numpy as np

from dreamfusion_jax.prior import testing as prior_testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_end_with_identical_params(tmp_path):
  prior_dir = prior_testing.tiny_prior_dir(tmp_path / "prior", "pixel")
  workdir = tmp_path / "run"
  coordinator = f"127.0.0.1:{_free_port()}"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "tests", "multiprocess_worker.py"), coordinator, "2", str(i),
       str(prior_dir), str(workdir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  assert "2 devices, step 2" in outputs[0] and "2 devices, step 2" in outputs[1]
  a = np.load(workdir / "params_0.npz")
  b = np.load(workdir / "params_1.npz")
  assert len(a.files) == len(b.files) > 0
  for name in a.files:
    np.testing.assert_array_equal(a[name], b[name])
  assert (workdir / "summary.json").exists()
