#!/usr/bin/env bash
# Installs what building and testing Stratum needs beyond the Rust toolchain.
# Idempotent; safe to run on every CI run. Today the workspace needs only
# cargo with rustfmt and clippy (the toolchain's own components); later parts
# add their system packages here, never by hand on a machine.
set -euo pipefail

missing=()
command -v cargo >/dev/null || missing+=("cargo (install Rust with rustup)")
cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt (rustup component add rustfmt)")
cargo clippy --version >/dev/null 2>&1 || missing+=("clippy (rustup component add clippy)")
if ((${#missing[@]})); then
  printf 'missing: %s\n' "${missing[@]}" >&2
  exit 1
fi
