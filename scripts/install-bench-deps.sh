#!/usr/bin/env bash
# Tools the comparison benchmarks need (not the tests): redis-server and
# redis-benchmark for `cargo bench -p stratum-node --bench server`, and fio
# to check `stratum-tune iotune` against (see README, "Tuning a host").
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && command -v fio >/dev/null; then
    echo "redis-server, redis-benchmark and fio present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq redis-server redis-tools fio
