#!/usr/bin/env bash
# Re-makes the shipped camera-conditioned prior (dreamfusion_jax/shapes/camera_weights), the second member
# of configs/shapes.py's prior ensemble, from the shipped text-only prior (dreamfusion_jax/shapes/weights).
#
# Usage: launch/camera_prior.sh WORKDIR     (~70 minutes on a 2-core CPU alone; minutes on a GPU)
#
# Two stages of train_prior, as the shipped one was made (its training.json records them):
#   1. the camera input added at zero (--camera-dim 32: elevation, apparent size and where the object's
#      centre projects, through diffusers' "text_time" embedding) and 943 steps at the common rate;
#   2. resumed with the camera layers' learning rate 10x (--camera-lr-scale 10) to step 2,629, the rate
#      cooling down (cosine to 0.1x) over the last quarter.
# The shipped run ended both stages by the clock (--max-minutes, --cooldown-minutes: 943 steps, then 40
# minutes with a 10-minute cooldown); here the same step counts and cooldown are fixed by step, so a re-run
# is the same recipe, not the same bits. Then: copy WORKDIR/export over dreamfusion_jax/shapes/camera_weights
# and run the tests and the benchmark (README, "Benchmark").
#
# Variables: PYTHON (default .venv/bin/python if present, else python3).
set -euo pipefail
WORKDIR=$(realpath -m "${1:?usage: launch/camera_prior.sh WORKDIR}")
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
COMMON=(--workdir "$WORKDIR" --init-from-weights dreamfusion_jax/shapes/weights --camera-dim 32
        --lr 2.5e-4 --warmup 100 --batch 24 --cameras shapes --seed 8 --shape-weights 1 1 1 1 2 2 2 2
        --out "$WORKDIR/export")
"$PYTHON" -m dreamfusion_jax.shapes.train_prior "${COMMON[@]}" --steps 943
"$PYTHON" -m dreamfusion_jax.shapes.train_prior "${COMMON[@]}" --resume --camera-lr-scale 10 \
    --steps 2629 --cooldown-from 2208
echo "exported: $WORKDIR/export (copy it over dreamfusion_jax/shapes/camera_weights to ship it)"
