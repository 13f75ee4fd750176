#!/usr/bin/env bash
# Re-makes the shipped camera-conditioned prior (dreamfusion_jax/shapes/camera_weights), the second member
# of configs/shapes.py's prior ensemble, from the shipped text-only prior (dreamfusion_jax/shapes/weights).
#
# Usage: launch/camera_prior.sh WORKDIR     (~110 minutes on a 2-core CPU alone; minutes on a GPU)
#
# Three stages of train_prior, as the shipped one was made (its training.json records them, the last
# stage at the top and each earlier one under "warm_start"):
#   1. the camera vector added at zero (--camera-dim 32: elevation, apparent size and where the object's
#      centre projects, through diffusers' "text_time" embedding) and 943 steps at the common rate;
#   2. resumed with the camera layers' learning rate 10x (--camera-lr-scale 10) to step 2,629, the rate
#      cooling down (cosine to 0.1x) over the last quarter;
#   3. that export continued with the camera also as two image channels (--camera-maps: where each
#      pixel's ray crosses the plane through the origin, added at zero to conv_in), 1,751 steps with the
#      camera layers at 10x, the last 275 cooling down.
# The shipped run ended its stages by the clock (--max-minutes, --cooldown-minutes: 943 steps, then 40
# minutes with a 10-minute cooldown; the third 42 minutes stopped and resumed from step 651, then 24
# minutes with a 6-minute cooldown); here the same step counts and cooldowns are fixed by step, so a re-run
# is the same recipe, not the same bits. Then: copy WORKDIR/export over
# dreamfusion_jax/shapes/camera_weights and run the tests and the benchmark (README, "Benchmark").
#
# Variables: PYTHON (default .venv/bin/python if present, else python3).
set -euo pipefail
WORKDIR=$(realpath -m "${1:?usage: launch/camera_prior.sh WORKDIR}")
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RECIPE=(--camera-dim 32 --lr 2.5e-4 --batch 24 --cameras shapes --shape-weights 1 1 1 1 2 2 2 2)
VECTOR=(--workdir "$WORKDIR/vector" --init-from-weights dreamfusion_jax/shapes/weights "${RECIPE[@]}"
        --warmup 100 --seed 8 --out "$WORKDIR/vector/export")
"$PYTHON" -m dreamfusion_jax.shapes.train_prior "${VECTOR[@]}" --steps 943
"$PYTHON" -m dreamfusion_jax.shapes.train_prior "${VECTOR[@]}" --resume --camera-lr-scale 10 \
    --steps 2629 --cooldown-from 2208
"$PYTHON" -m dreamfusion_jax.shapes.train_prior --workdir "$WORKDIR/maps" \
    --init-from-weights "$WORKDIR/vector/export" "${RECIPE[@]}" --camera-maps --camera-lr-scale 10 \
    --warmup 50 --seed 12 --steps 1751 --cooldown-from 1476 --out "$WORKDIR/export"
echo "exported: $WORKDIR/export (copy it over dreamfusion_jax/shapes/camera_weights to ship it)"
