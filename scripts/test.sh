#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of every crate, and a
# build check of the fuzz target. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz crate has its own workspace; keep it compiling.
cargo check --manifest-path wire/fuzz/Cargo.toml --locked --quiet
cargo test --workspace --locked
