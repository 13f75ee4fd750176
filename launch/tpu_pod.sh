#!/usr/bin/env bash
# Runs dreamfusion_jax on every worker of a Cloud TPU VM pod slice (e.g. v4-32: 4 hosts x 4 chips).
# Every host runs the same `python -m dreamfusion_jax.main ...`; main.py sees TPU_WORKER_HOSTNAMES and
# calls jax.distributed.initialize() by itself, so no coordinator flags are needed.
#
# Usage:
#   launch/tpu_pod.sh setup                  copy this repository to every worker and install it
#   launch/tpu_pod.sh train [main args...]   run training on every worker (output streams back here)
#
# Variables:
#   TPU_NAME    (required) name of the TPU VM, as in `gcloud compute tpus tpu-vm list`
#   ZONE        (required) its zone, e.g. us-central2-b
#   PROJECT     Google Cloud project (default: gcloud's configured project)
#   REPO_DIR    where the code lives on the workers (default: dreamfusion_jax, relative to $HOME)
#   JAX_VERSION jax version installed by setup (default: 0.10.2, as pinned in requirements.txt)
#   DETACH      1: start training with nohup and return; each worker logs to $REPO_DIR/train.log
#               (default 0: stream output; closing this terminal stops the run)
#   DRY_RUN     1: print the gcloud commands instead of running them
#
# The workdir must be one folder that every worker sees (checkpoints are written by all hosts and
# config/summary by host 0): a Filestore/NFS mount or a Cloud Storage bucket mounted with gcsfuse, e.g.
# --workdir=/mnt/runs/corgi. Stable Diffusion weights must be readable on every worker: a hub id
# (each worker downloads) or a local folder copied to the same path on each.
#
# Example:
#   export TPU_NAME=df-v4-32 ZONE=us-central2-b
#   launch/tpu_pod.sh setup
#   DETACH=1 launch/tpu_pod.sh train --config=configs/base.py \
#       --config.prompt="a DSLR photo of a corgi" --workdir=/mnt/runs/corgi
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
action="$1"
shift
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU VM zone}"
REPO_DIR="${REPO_DIR:-dreamfusion_jax}"
JAX_VERSION="${JAX_VERSION:-0.10.2}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

gcloud_args=(--zone "${ZONE}")
if [[ -n "${PROJECT:-}" ]]; then gcloud_args+=(--project "${PROJECT}"); fi

# Runs gcloud, or prints the command (one shell-quoted line) when DRY_RUN=1.
run_gcloud() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' gcloud "$@"
    echo
  else
    gcloud "$@"
  fi
}

# Runs a shell command on the given workers ("all" or an index).
on_workers() {
  local workers="$1" command="$2"
  run_gcloud compute tpus tpu-vm ssh "${TPU_NAME}" "${gcloud_args[@]}" --worker="${workers}" --command "${command}"
}

# Quotes arguments so the remote shell sees them exactly as given here.
quote() {
  local out="" arg
  for arg in "$@"; do out+=" $(printf '%q' "${arg}")"; done
  echo "${out}"
}

case "${action}" in
  setup)
    # Copy the working tree (without the local virtualenv and runs), then install on every worker.
    archive="$(mktemp "${TMPDIR:-/tmp}/dreamfusion_jax.XXXXXX.tar.gz")"
    tar -C "${repo_root}" --exclude=.venv --exclude=runs --exclude=.git -czf "${archive}" .
    run_gcloud compute tpus tpu-vm scp "${archive}" "${TPU_NAME}:dreamfusion_jax.tar.gz" "${gcloud_args[@]}" \
      --worker=all
    rm -f "${archive}"
    on_workers all "mkdir -p $(quote "${REPO_DIR}") && tar -xzf dreamfusion_jax.tar.gz -C $(quote "${REPO_DIR}") \
      && cd $(quote "${REPO_DIR}") && python3 -m pip install -q -r requirements.txt \
      && python3 -m pip install -q $(quote "jax[tpu]==${JAX_VERSION}") \
      && python3 -c 'import jax; print(\"installed jax\", jax.__version__)'"
    ;;
  train)
    main="python3 -m dreamfusion_jax.main$(quote "$@")"
    if [[ "${DETACH:-0}" == 1 ]]; then
      on_workers all "cd $(quote "${REPO_DIR}") && nohup ${main} > train.log 2>&1 < /dev/null &"
      echo "Started on all workers of ${TPU_NAME}; logs: ~/${REPO_DIR}/train.log on each worker."
    else
      on_workers all "cd $(quote "${REPO_DIR}") && ${main}"
    fi
    ;;
  *)
    usage
    ;;
esac
