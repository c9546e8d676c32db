#!/usr/bin/env bash
# The GPU check (at most 8 minutes on one GPU, no download): the CUDA-marked tests, a 2-epoch ADP run
# of VGG-19 on generated CIFAR-shaped data, the realised speed-up at --round-to 1, 8 and 16, and NVML
# energy, all written to one JSON file (default bench/results/gpu/gpu-check.json).
# Usage: scripts/gpu-check.sh [--dry-run] [--out FILE]   (--dry-run: the same steps on the CPU, tiny)
# Runs with the python3 on PATH (or $PYTHON) and this checkout's src/. A machine with no package
# registry can bring wheels (torch-pruning, say) in .whl/: they are installed into a scratch folder first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
if compgen -G "$repo/.whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/adprune-site \
    "$repo"/.whl/*.whl
  export PYTHONPATH="/tmp/adprune-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 480 "$PY" "$repo/bench/gpu_check.py" "$@"
