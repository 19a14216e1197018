#!/usr/bin/env bash
# How docs/run.md's split-placement gap measurement was made (2026-12-07, after the pipeline-thread
# fix): per model, a fresh profile of this CPU at threads=1, then right away dime.validate over
# 4g, wifi and 300/300/1 as in the merge-rule measurement of 2026-12-02, once with links emulated
# in user space (as then) and once shaped by the kernel (one message per transfer); then
# benchmarks/split_gap.py, one experiment per candidate cause of the gap.
# From the repository root, as root, nothing else running: bash docs/data/split-gap-2026-12-07/run.sh OUT_DIR
set -euo pipefail
PY=.venv/bin/python
OUT=${1:?give an output folder}
IMG=../shared/data/imagenette_samples
mkdir -p "$OUT"
for M in alexnet resnet18 mobilenet_v2; do
  $PY -m dime.samples -q --model $M --images $IMG --count 8 --out /tmp/feat/$M
  $PY -m dime.profile -q --model $M --device-name xeon-2core --torch-device cpu --threads 1 \
      --iterations 5 --runs 4 --warmup 2 --samples /tmp/feat/$M --out "$OUT/$M-xeon-2core.csv" --overwrite
  for SHAPER in user netns; do
    $PY -m dime.validate -q --profile "$OUT/$M-xeon-2core.csv" --models $M --links 4g,wifi,300/300/1 \
        --edge xeon-2core --edge-settings threads=1 --cloud xeon-2core --cloud-settings threads=1 \
        --shaper $SHAPER --images $IMG --out "$OUT/$M-$SHAPER.csv" --summary "$OUT/$M-$SHAPER.md"
  done
done
$PY benchmarks/split_gap.py --samples-root /tmp/feat --cuts 3 --n 16 --out-dir "$OUT/experiments" \
    --conditions isolated,unpinned,new-thread,new-thread-unset,cold-cache,alternate,sibling-spin,pingpong-block,pingpong-spin,pingpong-data,idle-0.03,idle-0.8,isolated-again
# every thread's CPU time in a split run (does anything spin while its device waits?), over a fast and a slow link
for LINK in 300/300/1 4g; do
  $PY docs/data/split-gap-2026-12-07/cpu_use.py "$OUT/cpu-${LINK//\//-}" -- --model alexnet --split conv5 \
      --profile "$OUT/alexnet-xeon-2core.csv" --edge-device xeon-2core --cloud-device xeon-2core \
      --edge-setting threads=1 --cloud-setting threads=1 --link $LINK --shaper user --min-query-count 32 \
      --warmup 2 --reference-runs 0 --images $IMG
done
