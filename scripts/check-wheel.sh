#!/usr/bin/env bash
# Build the sdist and the wheel, install the wheel (not editable) into a new, empty virtual
# environment and use it from outside the source tree: --version and --help, a two-epoch
# `adprune train` on generated Fashion-MNIST files, and `adprune.load` on the run it wrote.
# Usage: scripts/check-wheel.sh [PYTHON]   (PYTHON needs the `build` package: `make install-dev`)
set -euo pipefail
PY=${1:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m build --sdist --wheel --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; echo "error: python -m build failed" >&2; exit 1; }
wheel=$(ls "$work"/dist/adprune-*.whl)
sdist=$(ls "$work"/dist/adprune-*.tar.gz)
contents=$(tar -tzf "$sdist")
grep -q '/LICENSE$' <<<"$contents" || { echo "error: the sdist has no LICENSE" >&2; exit 1; }
echo "built $(basename "$sdist") and $(basename "$wheel")"

"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel" >"$work/install.log" 2>&1 \
  || { grep -v '^WARNING: Location' "$work/install.log" | tail -n 30 >&2; echo "error: installing the wheel failed" >&2; exit 1; }
cd "$work"  # outside the source tree: only the installed wheel can be imported
bin="$work/venv/bin"
"$bin/adprune" --version
"$bin/adprune" --help >/dev/null
PYTHONPATH="$repo/tests" "$bin/python" -c \
  "import sys; from pathlib import Path; from fake_data import write_fashion_mnist_like as w; w(Path(sys.argv[1]))" \
  "$work/data"
"$bin/adprune" train --model vgg11 --width 0.125 --data-dir "$work/data" --subset 256 --epochs 2 \
  --batch-size 64 --prune-at 1 --fade 0 --no-progress --no-report --out "$work/run" >/dev/null
"$bin/python" - "$work/run" <<'EOF'
import importlib.metadata
import importlib.resources
import json
import sys
from pathlib import Path

import adprune

run = Path(sys.argv[1])
assert "site-packages" in adprune.__file__, f"adprune imported from {adprune.__file__}, not the wheel"
assert importlib.metadata.version("adprune") == adprune.__version__
assert importlib.resources.files("adprune").joinpath("py.typed").is_file(), "the wheel has no py.typed"
model = adprune.load(run)
summary = json.loads((run / "summary.json").read_text())
params = sum(p.numel() for p in model.parameters())
assert params == summary["params"] < summary["params_initial"], (params, summary)
print(f"wheel ok: adprune {adprune.__version__}, a 2-epoch run pruned to {params:,} parameters and loaded")
EOF
