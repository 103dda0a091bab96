#!/usr/bin/env bash
# The transferable-BG benchmark (bench/transferable.py --device cuda) on a lent GPU machine,
# in one call of the workplace's `device` tool. That machine has PyTorch but neither OpenMM nor
# mdtraj, reaches no registry, and runs one command for at most 10 minutes (15 in all), so
# the wheels and the MD travel with the call and the `cuda` preset sizes itself to fit:
#
#   bash bench/tbg_device.sh wheels   # here, once: Python 3.12 wheels into .whl/ (git-ignored)
#   # the MD must exist here: .venv/bin/python bench/transferable.py (its data phase)
#   # then, through the device tool:
#   #   run(command="bash bench/tbg_device.sh run", carry=[".whl", "runs/bench-tbg/data"],
#   #       timeout_s=600)
#
# `run` installs the wheels into /tmp/site, runs the benchmark on the carried MD and copies
# the log, the evaluation (RUN/eval-test: table, JSON, Ramachandran grid), the summary and the
# run (checkpoint, train log, config.yaml) to $OUT (at most 8 files come back): those three
# in one directory here make a run directory that `boltzflow evaluate --run DIR --split test`
# re-evaluates. The wheels and the MD are about 57 MB of the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
wheels)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    mkdir -p .whl
    # OpenMM 8.6.1's Python 3.12 wheel is tagged manylinux_2_34 (installed and run on an H100
    # machine, 2026-12-05). PyYAML: a run directory's config.yaml (boltzflow.runs).
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_34_x86_64 -d .whl \
        openmm==8.6.1 mdtraj==1.11.1.post2 PeptideBuilder==1.1.0 biopython==1.88 pyyaml==6.0.4
    ls -l .whl
    ;;
run)
    : "${OUT:?run this on the device machine, where OUT is set}"
    [ -d runs/bench-tbg/data ] || { echo "carry runs/bench-tbg/data (the MD)" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/log"
    status=0
    python3 bench/transferable.py --device cuda 2>&1 | tee -a "$OUT/log" || status=$?
    run=runs/bench-tbg/run-cuda
    for f in "$run"/eval-test/evaluation.md "$run"/eval-test/evaluation.json \
        "$run"/eval-test/ramachandran_grid.png runs/bench-tbg/summary-cuda.json \
        "$run"/checkpoint.pt "$run"/train_log.csv "$run"/config.yaml; do
        if [ -f "$f" ]; then cp "$f" "$OUT/"; fi
    done
    exit "$status"
    ;;
*)
    echo "usage: bash bench/tbg_device.sh wheels|run" >&2
    exit 2
    ;;
esac
