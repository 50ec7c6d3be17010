#!/usr/bin/env bash
# Webhook bridge load benchmark (issue: >= 2000 signed deliveries/s durable on 2 cores,
# p99 < 50 ms, >= 0.5 of a bare ASGI endpoint served by the same uvicorn in the same run).
# The measuring code lives with the package: bridge/benchmarks/webhook_load.py.
set -euo pipefail
cd "$(dirname "$0")/../bridge"
exec .venv/bin/python benchmarks/webhook_load.py "$@"
