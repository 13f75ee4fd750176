#!/usr/bin/env bash
# Trains the embedded prior further on one GPU and scores the result with the SDS benchmark, in one
# command, on a machine that has jax, flax, optax and orbax but neither the pinned Flax releases of
# diffusers / transformers nor a package registry (a bare CUDA image).
#
# Usage:
#   launch/gpu_prior.sh wheels          here, where pip reaches a registry: downloads into .whl/ the pinned
#                                       wheels (requirements.txt's versions) such a machine lacks
#   launch/gpu_prior.sh run OUT_DIR     there: installs .whl/ into a private folder, continues the prior from
#                                       $INIT for $PRIOR_MINUTES, exports it, runs the SDS benchmark on it for
#                                       $BENCH_MINUTES, and writes OUT_DIR/prior.tar.gz (the exported prior and
#                                       its training log), OUT_DIR/eval.tar.gz (the benchmark's results, views,
#                                       run folders and logs), eval_reference.tar.gz (the same for the
#                                       shipped config, less its NeRFs) and
#                                       OUT_DIR/summary.txt
#   launch/gpu_prior.sh bench OUT_DIR   there, after `run` on the same (still warm) machine: continues the
#                                       benchmark on the prior `run` exported for $BENCH_MINUTES more (its
#                                       finished runs are reused, a cut one resumes from its checkpoint)
#   launch/gpu_prior.sh diagnose OUT_DIR  there: why the prior's training step is slow on the GPU. Times the
#                                       step's parts and the whole jitted step (bench/prior_train_step.py,
#                                       batch $PRIOR_BATCH, the camera prior's spec), then train_prior's own
#                                       loop alone on the chip for $PRIOR_MINUTES (default here 4,
#                                       compilation included), and
#                                       writes OUT_DIR/diagnose.txt: if the loop runs far below the step's
#                                       rate, the loop is at fault; if the step is far below its parts, the
#                                       step's program is. On an H200 the parts took 1.7 ms (render) and
#                                       16.5 ms (loss and gradient) at batch 96, train_prior ~2 s a step
#                                       (its weights were committed to the host CPU by diffusers'
#                                       from_pretrained, so the step ran on the host: fixed in load_prior;
#                                       this checks the fix on the chip)
#
# The two halves are time-boxed so that the whole command ends inside one ~10-minute call. Whatever the
# time box cuts off is still useful: train_prior exports at its --max-minutes stop, and the benchmark's
# finished runs are scored (a cut run is checkpointed, not scored). To ship the result, unpack the tarball
# and copy export/ over dreamfusion_jax/shapes/weights (keep its judge/), then run the tests.
# The benchmark scores the new prior where it would ship: a text-only prior alone
# (--config.prior.model=NEW --config.prior.ensemble="()", against the text-only rows of README's table),
# a camera-conditioned one (PRIOR_CAMERA_DIM > 0) as the second member of configs/shapes.py's ensemble
# beside the shipped text-only prior (--config.prior.ensemble="('NEW',)"), and the shipped configs/shapes.py
# in the same call, on the same GPU at the same time, as the reference (BENCH_REFERENCE=0 leaves it out).
#
# Variables (all optional):
#   PYTHON         interpreter (default python3)
#   INIT           exported prior to continue from (default: the shipped dreamfusion_jax/shapes/weights)
#   PRIOR_MINUTES  wall-clock length of the training, compilation included (default 4); as many steps as
#                  fit, the learning rate cooling down (cosine, to 0.1x) over the last quarter by the clock
#   PRIOR_STEPS    a cap on its optimizer steps (default 1000000: the clock ends it)
#   PRIOR_BATCH    images per step (default 96), a multiple of 8 and of the shape weights' sum
#   PRIOR_LR       peak learning rate (default 3e-4; the shipped prior's last fine-tune: 2.5e-4 at batch 24)
#   PRIOR_SHAPES   the shapes' shares of each batch (default "1 1 1 1 2 2 2 2": the torus, snowman,
#                  mushroom and table twice, as in the shipped prior's last fine-tune)
#   PRIOR_SEED     the renders' seed (default 5; earlier runs used 0, 1 and 3)
#   PRIOR_MAX_TIMESTEP  train on the ticks [0, this) only (default 1000: all; 650 spends the steps on the
#                  range configs/shapes.py's SDS queries, t <= 0.6 after its first 200 steps)
#   PRIOR_CAMERA_DIM  > 0: a camera-conditioned prior (train_prior --camera-dim): a text-only INIT gets the
#                  camera input added at zero; a camera-conditioned INIT needs its own value again
#                  (default 0: text only; the shipped camera prior: 32 and PRIOR_CAMERA_MAPS=1)
#   PRIOR_CAMERA_MAPS  1: the UNet also takes the camera as two image channels (train_prior --camera-maps),
#                  added at zero to an INIT without them (an INIT with them, such as the shipped camera
#                  prior, needs it again); the prior is then benchmarked as a camera prior (default 0)
#   BENCH_MINUTES  wall-clock cap of the benchmark (default 3.5; 0 skips it)
#   BENCH_REFERENCE  1: also score the shipped config (configs/shapes.py as it is) beside the new prior,
#                  SHARDS more processes at the same time, into eval_reference (default 1: the two on the
#                  same chip in the same call; 2 x 24 runs of a camera prior took 139 s on an H200); 0
#                  skips it. The warm-up compiles the new prior's step only: beside a text-only prior the
#                  reference (an ensemble) compiles its own, ~3 minutes, so give BENCH_MINUTES 6 there
#   SHARDS         benchmark processes sharing the GPU (default 8, for 16 CPU cores: scoring runs on them)
#   BENCH_ARGS     extra arguments for `python -m dreamfusion_jax.evaluate`, shell-quoted
#                  (e.g. "--seeds 0 --prompts 'a red sphere'")
#   WORK           scratch folder (default /tmp/gpu_prior)
#   WHEELS         the wheels' folder (default .whl, which .gitignore keeps out of git: carry it)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
# The pinned packages a bare CUDA image lacks (or holds in versions the pins exclude: transformers 4.57
# refuses huggingface-hub >= 1 and tokenizers > 0.23.0 at import).
PACKAGES=(diffusers transformers tokenizers huggingface-hub ml_collections tensorboardX trimesh)

pinned() {  # the version requirements.txt pins for $1
  local version
  version=$(grep -i -E "^$1==" requirements.txt | head -n 1 | cut -d= -f3)
  if [[ -z "$version" ]]; then
    echo "gpu_prior.sh: requirements.txt pins no version of $1" >&2
    exit 2
  fi
  echo "$version"
}

fetch_wheels() {
  local specs=() p
  for p in "${PACKAGES[@]}"; do specs+=("$p==$(pinned "$p")"); done
  mkdir -p "$WHEELS"
  # Binary wheels for the GPU machine's CPython 3.12 on x86-64, whatever this machine is.
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${specs[@]}"
  du -sh "$WHEELS"
}

run_on_gpu() {
  local out=$1
  local work=${WORK:-/tmp/gpu_prior}
  local init=${INIT:-dreamfusion_jax/shapes/weights}
  local steps=${PRIOR_STEPS:-1000000} batch=${PRIOR_BATCH:-96} lr=${PRIOR_LR:-3e-4}
  local shape_weights=${PRIOR_SHAPES:-1 1 1 1 2 2 2 2} seed=${PRIOR_SEED:-5}
  local max_timestep=${PRIOR_MAX_TIMESTEP:-1000}
  local prior_minutes=${PRIOR_MINUTES:-4}
  [[ -d "$init/unet" ]] || { echo "gpu_prior.sh: INIT=$init is not an exported prior (no unet/)" >&2; exit 2; }
  install_wheels "$out" "$work"

  local export_dir="$work/export" t0=$SECONDS
  rm -rf "$work/prior" "$export_dir" "$work/eval" "$work/eval_reference" "$work/warm"
  # The benchmark's processes would each compile the NeRF step first (167 s on the H200, 8 at once),
  # though it does not depend on the prior's weights or the prompt (both are its arguments): one
  # process compiles it here, on the CPU cores the training leaves idle, into the shared cache, and the
  # benchmark's processes load it from there (`warm_up`).
  local warm_pid
  rm -f "$work/warm_up.pid"
  # shellcheck disable=SC2064  # $work is expanded now: the trap runs after this function's locals are gone
  trap "kill \$(cat '$work/warm_up.pid' 2>/dev/null) 2>/dev/null || true" EXIT
  warm_up "$init" "$work" "$prior_minutes" & warm_pid=$!
  # shellcheck disable=SC2086  # the shape weights are one argument per shape
  "$PYTHON" -m dreamfusion_jax.shapes.train_prior --workdir "$work/prior" --init-from-weights "$init" \
    --steps "$steps" --max-minutes "$prior_minutes" \
    --cooldown-minutes "$(awk "BEGIN {print $prior_minutes / 4}")" --lr "$lr" --batch "$batch" \
    --shape-weights $shape_weights --seed "$seed" --max-timestep "$max_timestep" --cameras shapes \
    --camera-dim "${PRIOR_CAMERA_DIM:-0}" $( (( ${PRIOR_CAMERA_MAPS:-0} )) && echo --camera-maps ) \
    --out "$export_dir" 2>&1 \
    | tr '\r' '\n' | tee "$work/train_prior.log" | grep -v -E '^ *[0-9]+%' || true
  [[ -f "$export_dir/training.json" ]] || { echo "gpu_prior.sh: the prior was not exported" >&2; exit 1; }
  echo "prior: $((SECONDS - t0)) s"
  wait "$warm_pid" || true
  tail -n 1 "$work/warm_up.txt"
  { echo "init: $init"; echo "batch $batch, lr $lr, shapes $shape_weights, seed $seed, minutes $prior_minutes";
    grep -h -E "stopping after|^checkpoint|params" "$work/train_prior.log" | tail -n 3 || true
    tail -n 1 "$work/warm_up.txt"
  } > "$work/prior_summary.txt"
  benchmark "$out" "$work"
}

prior_flags() {  # sets PRIOR_FLAGS: the config overrides that put the prior $1 where it would ship
  if (( ${PRIOR_CAMERA_DIM:-0} > 0 || ${PRIOR_CAMERA_MAPS:-0} )); then
    PRIOR_FLAGS=(--config.prior.model=dreamfusion_jax/shapes/weights "--config.prior.ensemble=('$1',)")
  else
    PRIOR_FLAGS=(--config.prior.model="$1" --config.prior.ensemble="()")
  fi
}

warm_up() {  # one benchmark run on the prior $1, in $2/warm: fills the compilation cache, within $3 minutes
  local init=$1 work=$2 minutes=$3 t0=$SECONDS config_args=() arg bench_args=()
  prior_flags "$init"  # the same structure (one prior or an ensemble) as the benchmark's: the same step
  eval "bench_args=(${BENCH_ARGS:-})"
  for arg in "${bench_args[@]}"; do  # the benchmark's config overrides change the step: take them along
    if [[ "$arg" == --config.* ]]; then config_args+=("$arg"); fi
  done
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.08 timeout -s TERM "${minutes}m" "$PYTHON" -m dreamfusion_jax.evaluate \
    --config configs/shapes.py --workdir "$work/warm" --methods sds --seeds 0 --prompts "a red sphere" \
    --retrieval_prompts default "${PRIOR_FLAGS[@]}" "${config_args[@]}" \
    > "$work/warm_up.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$work/warm_up.pid"  # for run_on_gpu's exit trap (timeout passes its TERM on)
  if wait "$pid"; then
    echo "warm-up: one benchmark run compiled and ran in $((SECONDS - t0)) s" > "$work/warm_up.txt"
  else
    echo "warm-up: did not finish within the training's $minutes minutes (see warm_up.log)" > "$work/warm_up.txt"
  fi
}

install_wheels() {  # installs the carried wheels into $2/site; exports the environment every step needs
  local out=$1 work=$2
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "gpu_prior.sh: no wheels in $WHEELS/: run 'launch/gpu_prior.sh wheels' where pip reaches a registry," \
         "and carry $WHEELS" >&2
    exit 2
  fi
  mkdir -p "$out" "$work"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$work/site" "$WHEELS"/*.whl
  export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  # One compilation for every benchmark run: they trace the same step, only the inputs differ.
  export JAX_COMPILATION_CACHE_DIR="$work/jax_cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
  "$PYTHON" -c "import jax; print('devices:', jax.devices())"
}

diagnose() {  # the step's parts, the whole step, then train_prior's loop: each on the chip alone
  local out=$1 work=${WORK:-/tmp/gpu_prior} batch=${PRIOR_BATCH:-96} minutes=${PRIOR_MINUTES:-4}
  install_wheels "$out" "$work"
  rm -rf "$work/diagnose"
  # The render alone is known (1.7 ms after a 131 s compile on an H200); the whole step compiles it again.
  # The loop compiles its own step (not the benchmark's cache entry: another jit of the same function),
  # within its $minutes.
  { echo "== bench/prior_train_step.py --batch $batch --camera_dim 32 --parts grad,step"
    timeout -s TERM 400 "$PYTHON" bench/prior_train_step.py --batch "$batch" --camera_dim 32 --parts grad,step \
      --repeats 5 2>&1 \
      | grep -v -i warning || echo "(cut at 400 s)"
    echo "== train_prior's loop, $minutes minutes, from the camera prior, batch $batch"
    "$PYTHON" -m dreamfusion_jax.shapes.train_prior --workdir "$work/diagnose" \
      --init-from-weights dreamfusion_jax/shapes/camera_weights --camera-dim 32 --camera-maps \
      --steps 1000000 \
      --max-minutes "$minutes" --batch "$batch" --cameras shapes --shape-weights 1 1 1 1 2 2 2 2 \
      --out "$work/diagnose/export" 2>&1 \
      | tr '\r' '\n' | grep -E "it/s|s/it|checkpoint|stopping" | tail -n 4 || true
  } | tee "$out/diagnose.txt"
}

continue_benchmark() {
  local out=$1 work=${WORK:-/tmp/gpu_prior}
  [[ -f "$work/export/training.json" ]] || { echo "gpu_prior.sh: no exported prior in $work/export:" \
    "'bench' continues what 'run' began on the same machine" >&2; exit 2; }
  install_wheels "$out" "$work"
  benchmark "$out" "$work"
}

benchmark() {  # the SDS benchmark on $2/export, time-boxed; packs everything into $1
  local out=$1 work=$2 export_dir="$2/export"
  local bench_minutes=${BENCH_MINUTES:-3.5} shards=${SHARDS:-8} t0
  if [[ "$bench_minutes" != 0 ]]; then
    t0=$SECONDS
    local pids=() pid k bench_args=() runs=(eval) run processes=$shards
    eval "bench_args=(${BENCH_ARGS:-})"  # so that a quoted prompt stays one argument
    if [[ "${BENCH_REFERENCE:-1}" == 1 ]]; then runs+=(eval_reference); processes=$((2 * shards)); fi
    # Each process takes its share of the GPU's memory instead of 75% of it.
    local mem_fraction
    mem_fraction=$(awk "BEGIN {print 0.9 / $processes}")
    for run in "${runs[@]}"; do
      if [[ "$run" == eval ]]; then prior_flags "$export_dir"; else PRIOR_FLAGS=(); fi
      for ((k = 0; k < shards; k++)); do
        XLA_PYTHON_CLIENT_MEM_FRACTION=$mem_fraction \
        timeout -s TERM "${bench_minutes}m" "$PYTHON" -m dreamfusion_jax.evaluate --config configs/shapes.py \
          --workdir "$work/$run" --methods sds --shard "$k/$shards" "${PRIOR_FLAGS[@]}" "${bench_args[@]}" \
          > "$work/${run}_$k.log" 2>&1 &
        pids+=($!)
      done
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    echo "benchmark: $((SECONDS - t0)) s"
  fi

  { cat "$work/prior_summary.txt"
    for run in eval eval_reference; do
      [[ -d "$work/$run" ]] || continue
      echo "$run, finished runs:"; grep -h '^{"method' "$work/$run"_[0-9]*.log 2>/dev/null || true
      cat "$work/$run"/results*.md 2>/dev/null || echo "no results table (a shard was cut by the time box)"
    done
  } > "$out/summary.txt"
  # Archives each under the 16 MB a device call returns per file: the prior (11 MB), and the
  # benchmark with its finished runs' scores and final NeRFs (~0.5 MB a run, TensorBoard logs left
  # out), so that a CPU machine can merge them with runs it finishes itself (evaluate reuses a run
  # folder that holds both).
  tar -czf "$out/prior.tar.gz" -C "$work" export train_prior.log $(cd "$work" && ls warm_up.log 2>/dev/null)
  tar -czf "$out/eval.tar.gz" -C "$work" --exclude=tensorboard \
    $(cd "$work" && ls -d eval_[0-9]*.log eval 2>/dev/null)
  # The reference's scores and views without its NeRFs (the shipped config's, which any machine re-makes):
  # both benchmarks' NeRFs in one archive (30 MB for 2 x 24 runs) would not come back.
  if [[ -d "$work/eval_reference" ]]; then
    tar -czf "$out/eval_reference.tar.gz" -C "$work" --exclude=tensorboard --exclude=checkpoints \
      $(cd "$work" && ls -d eval_reference_[0-9]*.log eval_reference)
  fi
  cat "$out/summary.txt"
  ls -l "$out"
}

# Sourced (launch/gpu_bench.sh), it only defines the functions above.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    wheels) fetch_wheels ;;
    run) [[ $# -eq 2 ]] || { echo "usage: $0 run OUT_DIR" >&2; exit 2; }; run_on_gpu "$2" ;;
    bench) [[ $# -eq 2 ]] || { echo "usage: $0 bench OUT_DIR" >&2; exit 2; }; continue_benchmark "$2" ;;
    diagnose) [[ $# -eq 2 ]] || { echo "usage: $0 diagnose OUT_DIR" >&2; exit 2; }; diagnose "$2" ;;
    *) echo "usage: $0 wheels | $0 run OUT_DIR | $0 bench OUT_DIR | $0 diagnose OUT_DIR" \
         "(see the comment at the top)" >&2; exit 2 ;;
  esac
fi
