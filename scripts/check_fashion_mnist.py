"""Check that the Fashion-MNIST adprune finds is the real dataset: 60,000 training and 10,000 test
images of 28x28 (padded to 32x32), ten classes of 6,000 each, and its known pixel statistics.

Run by `make data` after the files are in place (the test suite reads generated files instead).
Exits 1 with a one-line reason when the files are not the real dataset.
"""

from __future__ import annotations

import sys

from adprune.errors import AdpruneError
from adprune.train.data import load_dataset


def main() -> int:
    """Load Fashion-MNIST the way `adprune train` does and check what the real files must hold."""
    try:
        splits = load_dataset("fashion-mnist")
    except AdpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = []
    if tuple(splits.train_images.shape) != (60000, 1, 32, 32):
        problems.append(f"training images {tuple(splits.train_images.shape)}, not (60000, 1, 32, 32)")
    if tuple(splits.test_images.shape) != (10000, 1, 32, 32):
        problems.append(f"test images {tuple(splits.test_images.shape)}, not (10000, 1, 32, 32)")
    if splits.train_labels.bincount(minlength=10).tolist() != [6000] * 10:
        problems.append("training labels are not 6,000 of each of the ten classes")
    if not (0.2 < splits.mean[0] < 0.3 and 0.3 < splits.std[0] < 0.4):
        problems.append(f"pixel mean {splits.mean[0]:.3f} / std {splits.std[0]:.3f} are not Fashion-MNIST's")
    if problems:
        print(f"error: these are not the Fashion-MNIST files: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print("Fashion-MNIST: 60,000 training and 10,000 test images, ten balanced classes: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
