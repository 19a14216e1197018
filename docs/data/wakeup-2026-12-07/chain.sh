#!/usr/bin/env bash
# The chain-context pass of docs/run.md's wake-up measurement (2026-12-07): as run.sh, with the
# bundles timed in chain context (--context chain: each timed run follows an untimed run of the
# layers before it) as well as after idling, and links emulated in user space only.
# From the repository root, as root, nothing else running: bash docs/data/wakeup-2026-12-07/chain.sh OUT_DIR
set -euo pipefail
PY=.venv/bin/python
OUT=${1:?give an output folder}
IMG=../shared/data/imagenette_samples
mkdir -p "$OUT"
for M in alexnet resnet18 mobilenet_v2; do
  $PY -m dime.samples -q --model $M --images $IMG --count 8 --out /tmp/feat/$M
  $PY -m dime.profile -q --model $M --device-name xeon-2core --torch-device cpu --threads 1 \
      --iterations 5 --runs 4 --warmup 2 --context chain --wakeup --samples /tmp/feat/$M \
      --out "$OUT/$M-xeon-2core-chain.csv" --overwrite
  $PY -m dime.validate -q --profile "$OUT/$M-xeon-2core-chain.csv" --models $M --links 4g,wifi,300/300/1 \
      --edge xeon-2core --edge-settings threads=1 --cloud xeon-2core --cloud-settings threads=1 \
      --shaper user --images $IMG --out "$OUT/$M-chain-user.csv" --summary "$OUT/$M-chain-user.md"
done
