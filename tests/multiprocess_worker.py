"""One process of the two-process test: train the tiny config, then dump this process's params.

Run by tests/test_multiprocess.py as
  python tests/multiprocess_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID PRIOR_DIR WORKDIR
"""

import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "configs"))

from dreamfusion_jax import distributed  # pylint: disable=g-import-not-at-top,wrong-import-position
from dreamfusion_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(coordinator, num_processes, process_id, prior_dir, workdir):
  distributed.initialize(coordinator, int(num_processes), int(process_id))
  assert jax.process_count() == int(num_processes)
  config = tiny.get_config()
  config.prompt = "a red cube"
  config.prior.model = prior_dir
  config.num_steps = 2
  config.export.formats = ()
  state = train.train_and_evaluate(config, workdir)
  leaves = jax.tree_util.tree_leaves(distributed.local_copy(state.params))
  np.savez(os.path.join(workdir, f"params_{process_id}.npz"), *leaves)
  print(f"process {process_id}: {jax.device_count()} devices, step {int(distributed.local_copy(state.step))}")


if __name__ == "__main__":
  main(*sys.argv[1:])
