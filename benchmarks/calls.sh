#!/usr/bin/env bash
# Calls under load through the all-in-one gateway (issue 17): concurrent transcoded calls,
# calls per second through the edge against straight to Asterisk, a memory soak. Deploys its
# own container (wagw-bench-calls); benchmarks/calls.py says what each phase measures and how.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python benchmarks/calls.py "$@"
