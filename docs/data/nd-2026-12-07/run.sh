#!/usr/bin/env bash
# How docs/run.md's N-device tables were measured (2026-12-07, after the pipeline-thread fix): per model, profile this CPU at
# threads=1, then validate the edge -> router -> cloud system (examples/edge-router-cloud.toml with
# these fresh profiles) with kernel-shaped links, one and four queries in flight.
# From the repository root, as root: bash docs/data/nd-2026-12-07/run.sh OUT_DIR
set -euo pipefail
PY=.venv/bin/python
OUT=${1:?give an output folder}
IMG=../shared/data/imagenette_samples
mkdir -p "$OUT"
for M in alexnet resnet18 mobilenet_v2; do
  # the example system, its profiles replaced by this model's fresh one
  $PY - "$M" "$OUT/$M-system.toml" <<'PYEOF'
import re, sys
text = open("examples/edge-router-cloud.toml").read()
text = re.sub(r"profiles = \[[^\]]*\]", f'profiles = ["{sys.argv[1]}-xeon-2core.csv"]', text)
open(sys.argv[2], "w").write(text)
PYEOF
  $PY -m dime.samples -q --model $M --images $IMG --count 8 --out /tmp/feat/$M
  $PY -m dime.profile -q --model $M --device-name xeon-2core --torch-device cpu --threads 1 \
      --iterations 5 --runs 4 --warmup 2 --samples /tmp/feat/$M --out "$OUT/$M-xeon-2core.csv" --overwrite
  $PY -m dime.validate -q --system "$OUT/$M-system.toml" --models $M --in-flight 1,4 --shaper netns \
      --scenario single-stream,offline --min-query-count 32 --warmup 2 --images $IMG \
      --out "$OUT/$M.csv" --summary "$OUT/$M.md"
done
