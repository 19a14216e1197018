#!/usr/bin/env bash
# The chain-context pass of docs/run.md's wake-up measurement (2026-12-07): run.sh with the
# bundles timed in chain context (--context chain: each timed run follows an untimed run of the
# layers before it) as well as after idling, and links emulated in user space only. It wrote
# MODEL-xeon-2core-chain.csv and MODEL-chain-user.csv; chain/ holds the latter as MODEL-user.csv.
# From the repository root, as root, nothing else running: bash docs/data/wakeup-2026-12-07/chain.sh OUT_DIR
CONTEXT=chain SHAPERS=user exec bash "$(dirname "$0")/run.sh" "$@"
