#!/usr/bin/env bash
# Make sure Fashion-MNIST is on this machine: Debian's package when apt works and we are root,
# else torchvision's download into ~/.cache/adprune. Exits non-zero with a one-line reason otherwise.
set -u
PY=${1:-python3}
DEBIAN_DIR=/usr/share/datasets/fashion-mnist
CACHE=${ADPRUNE_DATA:-$HOME/.cache/adprune}

if [ -f "$DEBIAN_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: found in $DEBIAN_DIR"; exit 0
fi
if [ -f "$CACHE/FashionMNIST/raw/train-images-idx3-ubyte.gz" ] || [ -f "$CACHE/FashionMNIST/raw/train-images-idx3-ubyte" ]; then
  echo "Fashion-MNIST: found in $CACHE"; exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Fashion-MNIST: installing Debian package dataset-fashion-mnist"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1
  [ -f "$DEBIAN_DIR/train-images-idx3-ubyte.gz" ] && { echo "Fashion-MNIST: installed in $DEBIAN_DIR"; exit 0; }
fi
echo "Fashion-MNIST: downloading with torchvision into $CACHE"
if "$PY" -c "import sys, torchvision; torchvision.datasets.FashionMNIST(sys.argv[1], download=True)" "$CACHE" >/dev/null 2>&1; then
  echo "Fashion-MNIST: downloaded to $CACHE"; exit 0
fi
echo "error: Fashion-MNIST is not available: install Debian's dataset-fashion-mnist (as root) or allow downloads, or put the IDX files in $CACHE/FashionMNIST/raw" >&2
exit 1
