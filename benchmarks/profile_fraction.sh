#!/usr/bin/env bash
# Profile one model fully and with --measure FRACTION on this machine, print both wall times, and
# compare the predicted rows of the second with the measurements of the first.
#
#   benchmarks/profile_fraction.sh MODEL [FRACTION] [EXTRA dime.profile FLAGS...]
#
# Needs a QUIET machine (the wall times and the comparison are measurements). Defaults: the
# shipped profiles' parameters (PROFILE_FLAGS="--threads 1,2 --iterations 5 --runs 4 --warmup 2"),
# the sample images in IMAGES=../shared/data/imagenette_samples (generated ones if absent), outputs
# under OUT=results/profile-fraction, PY=.venv/bin/python, DEVICE=$(hostname); MODEL_FLAGS (e.g.
# "--cuts a,b") go to dime.samples and dime.profile alike.
set -euo pipefail
MODEL=${1:?usage: $0 MODEL [FRACTION] [EXTRA dime.profile FLAGS...]}
FRACTION=${2:-0.25}
shift $(( $# >= 2 ? 2 : 1 ))
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/profile-fraction}
DEVICE=${DEVICE:-$(hostname)}
IMAGES=${IMAGES:-../shared/data/imagenette_samples}
PROFILE_FLAGS=${PROFILE_FLAGS:---threads 1,2 --iterations 5 --runs 4 --warmup 2}
MODEL_FLAGS=${MODEL_FLAGS:-}
name=${MODEL//[:\/]/_}
mkdir -p "$OUT"
images=()
if [ -d "$IMAGES" ]; then images=(--images "$IMAGES"); fi
# shellcheck disable=SC2086
"$PY" -m dime.samples --model "$MODEL" $MODEL_FLAGS "${images[@]}" --out "$OUT/samples-$name" -q

wall() {  # wall OUTFILE [FLAGS...]: profile afresh; print the seconds it took
    local out=$1; shift
    local t0
    t0=$("$PY" -c 'import time; print(time.time())')
    # shellcheck disable=SC2086
    "$PY" -m dime.profile --model "$MODEL" $MODEL_FLAGS --device-name "$DEVICE" $PROFILE_FLAGS \
        --samples "$OUT/samples-$name" --out "$out" --overwrite -q "$@" >&2
    "$PY" -c "import time; print(f'{time.time() - $t0:.1f}')"
}
full_s=$(wall "$OUT/$name-full.csv" "$@")
part_s=$(wall "$OUT/$name-measure.csv" --measure "$FRACTION" "$@")
echo "$MODEL on $DEVICE: full profile $full_s s, --measure $FRACTION $part_s s" \
     "($("$PY" -c "print(f'{100 * $part_s / $full_s:.0f}')")% of the full)"
"$PY" benchmarks/bench_predict.py --against "$OUT/$name-full.csv" "$OUT/$name-measure.csv"
