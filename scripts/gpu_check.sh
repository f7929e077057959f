#!/usr/bin/env bash
# One short GPU check (about 6 minutes on one GPU), one table: see hoffr_arch/benchmarks/gpu_check.py.
# Installs what it needs on a fresh machine (make install), then runs; the table is also written to
# gpu_check/gpu_check.md. Never part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
exec .venv/bin/python -m hoffr_arch.benchmarks.gpu_check "$@"
