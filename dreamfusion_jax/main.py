r"""Entry point: train a NeRF from a text prompt by score distillation.

  python -m dreamfusion_jax.main --config configs/base.py \
      --config.prompt="a DSLR photo of a corgi" --workdir runs/corgi

Re-running the same command resumes from the newest checkpoint in --workdir. Multi-host runs need no
flags on TPU VMs, SLURM and Open MPI (the cluster is detected); elsewhere pass the coordinator flags
(see launch/local_multiprocess.sh).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from dreamfusion_jax import distributed
from dreamfusion_jax import refusals
from dreamfusion_jax import summaries
from dreamfusion_jax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs and outputs.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for multi-process runs without a "
    "detected cluster (e.g. 127.0.0.1:12345).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.mark_flags_as_required(["config", "workdir"])


@refusals.as_messages()
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  summaries.quiet_library_logs()
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
