"""Multi-process start-up and the device mesh.

One process per host (or per GPU under SLURM); every process runs the same program on global arrays,
so after `jax.distributed.initialize()` the single-host code is the multi-host code.
"""

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def _cluster_detected() -> bool:
  """True inside a multi-process job that jax.distributed.initialize() can configure by itself."""
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ
  tpu_pod = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
  mpi = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
  return slurm or tpu_pod or mpi


def initialize(coordinator_address=None, num_processes=None, process_id=None) -> None:
  """Starts jax.distributed when flags are given or a cluster is detected; no-op on one host."""
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ValueError("--coordinator_address, --num_processes and --process_id go together; "
                       f"got {explicit}.")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id must be in [0, {num_processes}); got {process_id}.")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif _cluster_detected():
    jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process); views split over `data`."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices, (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
  """Places a host pytree (identical on every process) on all devices of the mesh.

  `make_array_from_callback` works the same on one and many hosts: each process fills only the
  shards of its own devices.
  """
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def local_copy(tree):
  """Host numpy copy of a replicated pytree, read from this process's first shard.

  Works on any number of processes (unlike `jax.device_get`, which needs every shard addressable),
  so process 0 can render logs and exports alone without entering a collective program.
  """
  return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), tree)
