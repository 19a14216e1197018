#!/usr/bin/env bash
# How docs/run.md's measurement with the wake-up term was made (2026-12-07): the split-gap
# measurement of docs/data/split-gap-2026-12-07/run.sh again, with profiles that also time
# wake-up after idling (dime.profile --wakeup), so that every prediction (the solver's plan and
# each split) counts it. Per model: a fresh threads=1 profile of this CPU, then right away
# dime.validate over 4g, wifi and 300/300/1, links emulated in user space and shaped by the kernel.
# The profiles went to profiles/wakeup/ (OUT_DIR was results/wakeup).
# From the repository root, as root, nothing else running: bash docs/data/wakeup-2026-12-07/run.sh OUT_DIR
#
# model-choice/ holds an earlier pass of the same script (alexnet and resnet18; then --wakeup
# timed the three probes up to 1 s and each bundle's own extra was scaled by the curve at any
# idle): remodel.py predicts its rows with each candidate model of wake-up.
set -euo pipefail
PY=.venv/bin/python
OUT=${1:?give an output folder}
IMG=../shared/data/imagenette_samples
CONTEXT=${CONTEXT:-isolated}   # chain.sh: chain
SHAPERS=${SHAPERS:-user netns}  # chain.sh: user
TAG=$([ "$CONTEXT" = chain ] && echo -chain || true)
mkdir -p "$OUT"
for M in alexnet resnet18 mobilenet_v2; do
  $PY -m dime.samples -q --model $M --images $IMG --count 8 --out /tmp/feat/$M
  $PY -m dime.profile -q --model $M --device-name xeon-2core --torch-device cpu --threads 1 \
      --iterations 5 --runs 4 --warmup 2 --context $CONTEXT --wakeup --samples /tmp/feat/$M \
      --out "$OUT/$M-xeon-2core$TAG.csv" --overwrite
  for SHAPER in $SHAPERS; do
    $PY -m dime.validate -q --profile "$OUT/$M-xeon-2core$TAG.csv" --models $M --links 4g,wifi,300/300/1 \
        --edge xeon-2core --edge-settings threads=1 --cloud xeon-2core --cloud-settings threads=1 \
        --shaper $SHAPER --images $IMG --out "$OUT/$M$TAG-$SHAPER.csv" --summary "$OUT/$M$TAG-$SHAPER.md"
  done
done
