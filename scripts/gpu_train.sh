#!/usr/bin/env bash
# One device call that continues the shipped weights (hoffr_arch/benchmarks/gpu_train.py): corpus built
# on the device while the batch sweep (eager vs CUDA graphs, fp32 vs bf16, at most 3 minutes) runs on the
# GPU, BasicSR training from the shipped fp32 weights with a checkpoint a minute (compiled where the
# sweep measured it trains more), scored on the held-out sources; at most 9 minutes in all. Never part of CI.
#
#   bash scripts/gpu_train.sh --prepare        # here, online: .whl/ (basicsr, lmdb for Python 3.12)
#                                              # and datasets/gpu_sources/ (the corpus sources)
#   device run: bash scripts/gpu_train.sh --out $OUT, carrying .whl and datasets/gpu_sources
#   bash scripts/gpu_train.sh --device cpu --minutes 1 --out gpu_train_out   # dry run on a CPU
#
# Uses `python3` as it is when it imports hoffr_arch and basicsr, else the project's venv when it has
# one, else installs the carried wheels (.whl/) into /tmp/site (the device), else runs make install.
set -euo pipefail
export GPU_TRAIN_START=${GPU_TRAIN_START:-$(date +%s.%N)}
cd "$(dirname "$0")/.."
if [ "${1:-}" = --prepare ]; then
    PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
    mkdir -p .whl datasets/gpu_sources/videos
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl basicsr==1.4.2
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl lmdb==3.0.0
    SRC=${2:-../shared/data}
    for d in bedroom basketballpass vimeo_septuplets; do
        [ -d "datasets/gpu_sources/$d" ] || cp -r "$SRC/$d" datasets/gpu_sources/
    done
    cp "$SRC/videos/bikes.mp4" datasets/gpu_sources/videos/
    chmod -R u+w datasets/gpu_sources
    du -sh .whl datasets/gpu_sources
    echo "ready: run(command='bash scripts/gpu_train.sh --out \$OUT'," \
        "carry=['.whl', 'datasets/gpu_sources'], timeout_s=540)"
    exit 0
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if python3 -c 'import hoffr_arch, basicsr' 2>/dev/null; then
    PY=python3
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import hoffr_arch, basicsr' 2>/dev/null; then
    PY=.venv/bin/python
elif ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
    PY=python3
else
    make install >/dev/null
    PY=.venv/bin/python
fi
export PYTHONUNBUFFERED=1
exec "$PY" -m hoffr_arch.benchmarks.gpu_train "$@"
