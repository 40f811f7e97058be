#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of every crate, and a
# build check of the fuzz target. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# A from-scratch run builds ~1.5 GiB (tests, clippy, the fuzz check) and its
# tests write a few hundred MiB more; incremental caches would only add disk
# for a build that is thrown away.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
need_mib=3072
free_mib=$(df -Pm . | awk 'NR == 2 { print $4 }')
if [ "${free_mib:-0}" -lt "$need_mib" ]; then
    # A warning, not a refusal: a warm target dir needs far less. If the run
    # then dies with "No space left on device", this line says why.
    echo "scripts/test.sh: warning: only ${free_mib} MiB free on $(df -P . | awk 'NR == 2 { print $6 }');" \
         "a from-scratch run needs about ${need_mib} MiB (build plus test data)" >&2
fi

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz crate has its own workspace; keep it compiling.
cargo check --manifest-path wire/fuzz/Cargo.toml --locked --quiet
cargo test --workspace --locked
