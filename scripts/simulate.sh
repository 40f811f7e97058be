#!/usr/bin/env bash
# Long searches of the store simulator (node/tests/simulate_store.rs):
#   scripts/simulate.sh --seeds 5000 [--first 1]
# A failing seed prints the one command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=1000
first=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --first) first="$2"; shift 2 ;;
        *) echo "usage: $0 [--seeds N] [--first M]" >&2; exit 2 ;;
    esac
done
STRATUM_SIM_SEEDS="$seeds" STRATUM_SIM_FIRST="$first" \
    cargo test --release -p stratum-node --test simulate_store \
    the_store_keeps_every_promise_under_random_faults -- --nocapture
