#!/usr/bin/env bash
# Installs what building and testing Stratum needs beyond the Rust toolchain.
# Idempotent; safe to run on every CI run. The workspace needs cargo
# with rustfmt and clippy, and git for the client's tests; parts add their
# system packages here, never by hand on a machine.
set -euo pipefail

missing=()
command -v cargo >/dev/null || missing+=("cargo (install Rust with rustup)")
cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt (rustup component add rustfmt)")
cargo clippy --version >/dev/null 2>&1 || missing+=("clippy (rustup component add clippy)")
# The client's import/export tests drive git (SHA-256 repositories need 2.29+).
if ! command -v git >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq git >/dev/null || missing+=("git (apt-get install git)")
  else
    missing+=("git (apt-get install git)")
  fi
fi
if ((${#missing[@]})); then
  printf 'missing: %s\n' "${missing[@]}" >&2
  exit 1
fi
