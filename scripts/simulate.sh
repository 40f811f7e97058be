#!/usr/bin/env bash
# Long searches of the deterministic simulators, in a release build:
#   scripts/simulate.sh --seeds 5000 [--first 1]             # the store (simulate_store.rs)
#   scripts/simulate.sh --cluster --seeds 500 [--first 1]    # the cluster (simulate_cluster.rs)
# A failing seed prints the one command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=store
seeds=
first=1
while [ $# -gt 0 ]; do
    case "$1" in
        --cluster) target=cluster; shift ;;
        --store) target=store; shift ;;
        --seeds) seeds="$2"; shift 2 ;;
        --first) first="$2"; shift 2 ;;
        *) echo "usage: $0 [--cluster | --store] [--seeds N] [--first M]" >&2; exit 2 ;;
    esac
done
case "$target" in
    store)
        test=simulate_store
        name=the_store_keeps_every_promise_under_random_faults
        seeds="${seeds:-1000}"
        ;;
    cluster)
        test=simulate_cluster
        name=the_cluster_keeps_every_promise_under_random_faults
        seeds="${seeds:-200}"
        ;;
esac
STRATUM_SIM_SEEDS="$seeds" STRATUM_SIM_FIRST="$first" \
    cargo test --release -p stratum-node --test "$test" "$name" -- --nocapture
