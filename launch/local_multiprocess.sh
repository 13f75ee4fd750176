#!/usr/bin/env bash
# Starts N processes of one training run on this host, as a multi-host run would (one JAX process per
# host or per GPU), coordinated over 127.0.0.1. Useful to test multi-process code on a laptop, or to run
# one process per GPU on a multi-GPU box without SLURM.
#
# Usage:
#   launch/local_multiprocess.sh N [arguments of python -m dreamfusion_jax.main ...]
#
# Each process i runs
#   $PYTHON -m dreamfusion_jax.main --coordinator_address=127.0.0.1:$PORT --num_processes=N \
#       --process_id=i [arguments...]
# Process 0 prints to this terminal; process i > 0 writes to $LOG_DIR/process_<i>.log. The script waits
# for all of them; if one fails it stops the others (they would block at the next collective) and exits
# with the failed process's status, printing the end of its log.
#
# Variables (all optional):
#   PYTHON      interpreter (default: .venv/bin/python if present, else python3)
#   PORT        coordinator port on 127.0.0.1 (default: a free port)
#   LOG_DIR     folder for the logs of processes 1..N-1 (default: a new folder under ${TMPDIR:-/tmp})
#   SPLIT_GPUS  1: process i sees only GPU i (CUDA_VISIBLE_DEVICES=i); default 0 leaves devices alone
#   GRACE_S     seconds the other processes get to exit after a failure before SIGKILL (default 20)
#   CPU_DEVICES K: on CPU, fake K devices per process (XLA_FLAGS=--xla_force_host_platform_device_count=K,
#               JAX_PLATFORMS=cpu); default unset
#
# Examples:
#   # Two CPU processes with two fake devices each, on the tiny config (4 devices in all):
#   CPU_DEVICES=2 launch/local_multiprocess.sh 2 --config configs/tiny.py \
#       --config.prior.model=/path/to/tiny_prior --config.prompt="a red cube" --workdir /tmp/tiny_mp
#   # One process per GPU on a 4-GPU machine:
#   SPLIT_GPUS=1 launch/local_multiprocess.sh 4 --config configs/base.py \
#       --config.prompt="a DSLR photo of a corgi" --workdir runs/corgi
set -euo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N [python -m dreamfusion_jax.main arguments...]  (N >= 1 processes)" >&2
  exit 2
fi
num_processes="$1"
shift

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${PORT:-}" ]]; then
  PORT="$("${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
LOG_DIR="${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/dreamfusion_local.XXXXXX")}"
mkdir -p "${LOG_DIR}"
if [[ -n "${CPU_DEVICES:-}" ]]; then
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="--xla_force_host_platform_device_count=${CPU_DEVICES}"
fi

echo "Starting ${num_processes} processes, coordinator 127.0.0.1:${PORT}, logs of processes 1.. in ${LOG_DIR}"
pids=()
for ((i = 0; i < num_processes; i++)); do
  cmd=("${PYTHON}" -m dreamfusion_jax.main "--coordinator_address=127.0.0.1:${PORT}"
       "--num_processes=${num_processes}" "--process_id=${i}" "$@")
  if [[ "${SPLIT_GPUS:-0}" == 1 ]]; then
    cmd=(env "CUDA_VISIBLE_DEVICES=${i}" "${cmd[@]}")
  fi
  if ((i == 0)); then
    "${cmd[@]}" &
  else
    "${cmd[@]}" >"${LOG_DIR}/process_${i}.log" 2>&1 &
  fi
  pids+=("$!")
done

declare -A done_  # indices of processes already waited for (their pids may be reused)
alive() {
  local i
  for i in "${!pids[@]}"; do
    if [[ -z "${done_[$i]:-}" ]] && kill -0 "${pids[$i]}" 2>/dev/null; then echo "${pids[$i]}"; fi
  done
}
# SIGTERM first (a process that can still checkpoint does so), SIGKILL after GRACE_S seconds: peers of a
# failed process are usually stuck in a collective that will never complete.
stop_all() {
  local pid waited=0
  for pid in $(alive); do kill -TERM "${pid}" 2>/dev/null || true; done
  while [[ -n "$(alive)" ]] && ((waited < ${GRACE_S:-20})); do sleep 1; waited=$((waited + 1)); done
  for pid in $(alive); do kill -KILL "${pid}" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

# Poll instead of `wait -n` so we know which process ended and can report it.
remaining="${num_processes}"
while ((remaining > 0)); do
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    [[ -n "${done_[$i]:-}" ]] && continue
    kill -0 "${pid}" 2>/dev/null && continue
    status=0
    wait "${pid}" || status=$?
    done_[$i]=1
    remaining=$((remaining - 1))
    if ((status != 0)); then
      echo "process ${i} (pid ${pid}) failed with status ${status}; stopping the others" >&2
      if ((i > 0)); then tail -n 40 "${LOG_DIR}/process_${i}.log" >&2 || true; fi
      stop_all
      wait || true
      exit "${status}"
    fi
  done
  sleep 1
done
echo "All ${num_processes} processes finished."
