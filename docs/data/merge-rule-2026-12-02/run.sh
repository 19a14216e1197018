#!/usr/bin/env bash
# How docs/run.md's merge-rule tables were measured (2026-12-02, dime at commit ec76c69, whose
# dime.run emulated links in user space): per model, profile this CPU at threads=1, then validate
# with the merge rule (the default) and with --bundle-sum, right after.
# From the repository root: bash docs/data/merge-rule-2026-12-02/run.sh OUT_DIR
# (with today's dime add --shaper user to validate, for the same link emulation)
set -euo pipefail
PY=.venv/bin/python
OUT=${1:?give an output folder}
IMG=../shared/data/imagenette_samples
mkdir -p "$OUT"
for M in alexnet resnet18 mobilenet_v2; do
  $PY -m dime.samples -q --model $M --images $IMG --count 8 --out /tmp/feat/$M
  $PY -m dime.profile -q --model $M --device-name xeon-2core --torch-device cpu --threads 1 \
      --iterations 5 --runs 4 --warmup 2 --samples /tmp/feat/$M --out "$OUT/$M-xeon-2core.csv" --overwrite
  for SEM in merge bundle-sum; do
    EXTRA=""; [ $SEM = bundle-sum ] && EXTRA="--bundle-sum"
    $PY -m dime.validate -q --profile "$OUT/$M-xeon-2core.csv" --models $M --links 4g,wifi,300/300/1 \
        --edge xeon-2core --edge-settings threads=1 --cloud xeon-2core --cloud-settings threads=1 \
        --images $IMG --out "$OUT/$M-$SEM.csv" --summary "$OUT/$M-$SEM.md" $EXTRA
  done
done
