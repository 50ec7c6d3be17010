#!/usr/bin/env bash
# Pre-flight check of 100 scaffolded clients, per client, against a no-op playbook on the same
# inventories in the same run (benchmarks/clients.py says how). WAGW_BENCH_CLIENTS=N for fewer.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python benchmarks/clients.py "$@"
