#!/usr/bin/env bash
# Scores several configs of the SDS benchmark at once on one GPU and compares each with the first, run by
# run: a sweep of configs/shapes.py's settings in one device call. On an H200 a benchmark run (600 steps
# and its scoring) takes 7-9 s once compiled with 8 processes sharing the chip, ~27 s with 20 (0.7 runs/s
# in all), and five configs' steps compiled at once in 181 s: five configs x 4 shards on seeds 0-2 in 8
# minutes finished 23-28 of each config's 36 runs (docs/benchmark.md, "A third device call"). The CPU
# benchmark takes about an hour a seed on 2 cores. Size a sweep to ~0.7 runs/s after ~3 minutes.
#
# Usage:
#   launch/gpu_prior.sh wheels                         here, where pip reaches a registry (carry .whl)
#   launch/gpu_bench.sh OUT_DIR NAME=OVERRIDES ...     there; the first config is the reference, e.g.
#     launch/gpu_bench.sh "$OUT" shipped= cfg15=--config.sds.guidance_scale=15 \
#         "long=--config.num_steps=800 --config.log.checkpoint_every=400"
#   OVERRIDES are evaluate's --config.* flags, split at spaces (so no spaces inside one value).
#
# Each config compiles its training step once (one warm-up run, "a red sphere" seed 0, into its own
# workdir, where its shard reuses it; the compilation cache is shared) and then runs the benchmark in
# SHARDS processes. A config's workdir ($WORK/NAME) is kept: a second call reuses its finished runs, and
# evaluate refuses (in NAME's logs) runs there trained under other overrides, so give a changed config a
# new NAME. Everything stops at BENCH_MINUTES; runs a time box cut are checkpointed, not scored,
# and the comparison is over the runs every config finished (dreamfusion_jax.evaluate.compare).
# Writes OUT_DIR/compare.md (the table), OUT_DIR/rows_NAME.jsonl (each finished run's scores) and
# OUT_DIR/bench.tar.gz (each config's logs, results tables and views.png; no NeRFs).
#
# Variables (all optional):
#   SEEDS          the benchmark's seeds (default 0,1)
#   SHARDS         processes per config (default 4)
#   BENCH_MINUTES  wall-clock cap of the whole benchmark, warm-ups included (default 7)
#   BENCH_ARGS     extra arguments for every config's `python -m dreamfusion_jax.evaluate`, shell-quoted
#   PRIOR_BENCH    arguments for bench/prior_train_step.py, run beside the sweep in its first PRIOR_BENCH_MINUTES
#                  (default 4) with its own share of the GPU's memory (e.g. "--batch 96 --camera_dim 32";
#                  default: not run). Its times are measured on a shared chip: an upper bound.
#   PYTHON, WHEELS, WORK   as launch/gpu_prior.sh (WORK default /tmp/gpu_bench)
set -euo pipefail

# shellcheck source=launch/gpu_prior.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_prior.sh"  # install_wheels, PYTHON, WHEELS; cds to the repo

usage() { echo "usage: $0 OUT_DIR NAME=OVERRIDES [NAME=OVERRIDES ...]  (see the comment at the top)" >&2; exit 2; }

bench_config() {  # $1 name, $2 overrides, $3 work, $4 deadline (in $SECONDS), $5 memory fraction
  local name=$1 work=$3 deadline=$4 mem=$5 overrides=() bench_args=() pids=() k left
  read -r -a overrides <<< "$2"
  eval "bench_args=(${BENCH_ARGS:-})"
  local dir="$work/$name"
  left=$((deadline - SECONDS))
  XLA_PYTHON_CLIENT_MEM_FRACTION=$mem timeout -s TERM "$left" "$PYTHON" -m dreamfusion_jax.evaluate \
    --config configs/shapes.py --workdir "$dir" --methods sds --seeds "${SEEDS%%,*}" --prompts "a red sphere" \
    --retrieval_prompts default "${overrides[@]}" > "$work/${name}_warm.log" 2>&1 || true
  echo "$name: warm-up done at $SECONDS s"
  for ((k = 0; k < SHARDS; k++)); do
    left=$((deadline - SECONDS))
    (( left > 0 )) || break
    XLA_PYTHON_CLIENT_MEM_FRACTION=$mem timeout -s TERM "$left" "$PYTHON" -m dreamfusion_jax.evaluate \
      --config configs/shapes.py --workdir "$dir" --methods sds --seeds "$SEEDS" --shard "$k/$SHARDS" \
      "${overrides[@]}" "${bench_args[@]}" > "$work/${name}_$k.log" 2>&1 &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || true; done
  echo "$name: finished runs: $(cat "$work/${name}"_[0-9]*.log | grep -c '^{"method' || true)"
}

check_configs() {  # refuses, before any benchmark, a config whose overrides name no field or a bad value
  "$PYTHON" - "$@" <<'PY' || { echo "gpu_bench.sh: nothing was run" >&2; exit 2; }
import sys
from dreamfusion_jax import config_check, config_files
for arg in sys.argv[1:]:
  name, _, overrides = arg.partition("=")
  settings = []
  for flag in overrides.split():
    if not flag.startswith("--config."):
      sys.exit(f"gpu_bench.sh: config {name}: {flag!r} is not a --config.FIELD=VALUE override")
    settings.append(flag[len("--config."):])
  config = config_files.load(config_files.SHAPES)
  config.prompt, config.distill = "a red sphere", "sds"  # what evaluate sets per run
  try:
    config_files.apply_overrides(config, settings)
    config_check.check(config)
  except (ValueError, TypeError) as e:
    sys.exit(f"gpu_bench.sh: config {name}: {e}")
PY
}

main() {
  (( $# >= 3 )) || { echo "gpu_bench.sh: give OUT_DIR, a reference config and at least one other" >&2; usage; }
  local out=$1 work=${WORK:-/tmp/gpu_bench} names=() overrides=() arg
  shift
  for arg in "$@"; do
    [[ "$arg" == *=* && "${arg%%=*}" =~ ^[A-Za-z0-9_]+$ ]] || { echo "gpu_bench.sh: '$arg' is not NAME=OVERRIDES" \
      "(NAME of letters, digits, _)" >&2; usage; }
    if [[ " ${names[*]} " == *" ${arg%%=*} "* ]]; then
      echo "gpu_bench.sh: the name ${arg%%=*} is given twice (each config has its own workdir)" >&2; exit 2
    fi
    names+=("${arg%%=*}"); overrides+=("${arg#*=}")
  done
  SEEDS=${SEEDS:-0,1} SHARDS=${SHARDS:-4}
  local minutes=${BENCH_MINUTES:-7}
  install_wheels "$out" "$work"
  check_configs "$@"
  rm -rf "${work:?}"/*_warm.log "$work"/*_[0-9]*.log
  local deadline=$((SECONDS + $(awk "BEGIN {print int($minutes * 60)}")))
  local processes=$((${#names[@]} * SHARDS)) mem bench_mem=0 pids=() i
  if [[ -n "${PRIOR_BENCH:-}" ]]; then
    bench_mem=0.2
    local prior_args=()
    read -r -a prior_args <<< "$PRIOR_BENCH"
    XLA_PYTHON_CLIENT_MEM_FRACTION=$bench_mem timeout -s TERM "$(awk "BEGIN {print int(${PRIOR_BENCH_MINUTES:-4} * 60)}")" \
      "$PYTHON" bench/prior_train_step.py "${prior_args[@]}" > "$out/prior_bench.txt" 2>&1 &
    pids+=($!)
  fi
  mem=$(awk "BEGIN {print (0.9 - $bench_mem) / $processes}")
  for i in "${!names[@]}"; do
    bench_config "${names[$i]}" "${overrides[$i]}" "$work" "$deadline" "$mem" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  echo "benchmark: $SECONDS s"

  local specs=()
  for i in "${!names[@]}"; do
    cat "$work/${names[$i]}"_[0-9]*.log "$work/${names[$i]}"_warm.log 2>/dev/null | grep '^{"method' \
      > "$out/rows_${names[$i]}.jsonl" || true
    specs+=("${names[$i]}=$out/rows_${names[$i]}.jsonl")
  done
  { echo "seeds $SEEDS, $SHARDS processes per config, $minutes minutes"
    for i in "${!names[@]}"; do echo "${names[$i]}: ${overrides[$i]:-(configs/shapes.py as it is)}"; done
    "$PYTHON" -m dreamfusion_jax.evaluate.compare "${specs[@]}" 2>&1 || true
  } > "$out/compare.md"
  (cd "$work" && tar -czf "$out/bench.tar.gz" --exclude=checkpoints --exclude=tensorboard --exclude='*.npy' \
    --exclude='*.msgpack' ./*.log "${names[@]}" 2>/dev/null) || true
  cat "$out/compare.md"
  ls -l "$out"
}

# Sourced (tests), it only defines the functions above.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
