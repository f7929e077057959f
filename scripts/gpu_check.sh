#!/usr/bin/env bash
# One short GPU check (about 6 minutes on one GPU), one table: see hoffr_arch/benchmarks/gpu_check.py.
# Uses `python3` as it is when it already imports hoffr_arch (a machine with torch and the
# requirements installed, PYTHONPATH set); otherwise installs what it needs (make install) and uses
# the project's venv. The table is also written to gpu_check/gpu_check.md. Never part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if python3 -c 'import hoffr_arch' 2>/dev/null; then
    PY=python3
else
    make install >/dev/null
    PY=.venv/bin/python
fi
exec "$PY" -m hoffr_arch.benchmarks.gpu_check "$@"
