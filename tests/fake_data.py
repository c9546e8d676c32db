"""Small datasets written in the real on-disk formats, so no test needs a download or a system package.

`write_fashion_mnist_like` writes a learnable stand-in for Fashion-MNIST (10 classes of shifted,
noisy 28x28 shapes) as the four gzipped IDX files Debian's `dataset-fashion-mnist` ships. The test
session writes it once and points `ADPRUNE_DATA` at it (see conftest.py), so every test that trains,
in-process or in a subprocess, reads these files and never the real dataset.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

FAKE_TRAIN_IMAGES = 2048
FAKE_TEST_IMAGES = 1000
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")  # fmt: skip


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """An IDX file of unsigned bytes (magic 0x08, ndim), gzipped (as `path.gz`) when `compress`."""
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload, compresslevel=1))
    else:
        path.write_bytes(payload)


def write_idx_dir(directory: Path, splits: dict[str, np.ndarray], compress: bool = True) -> None:
    """The four MNIST-format files from `splits` (train_x, train_y, test_x, test_y) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (splits["train_x"], splits["train_y"], splits["test_x"], splits["test_y"])
    for stem, array in zip(IDX_STEMS, arrays, strict=True):
        write_idx(directory / stem, array, compress)


def mnist_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` uniformly random 28x28 uint8 images and labels in 0..9: exact pixels for reader tests."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_mnist_dir(directory: Path, compress: bool = True) -> dict[str, np.ndarray]:
    """Five random training and three random test images in MNIST's files; returns what was written."""
    train_x, train_y = mnist_like(5, seed=1)
    test_x, test_y = mnist_like(3, seed=2)
    truth = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    write_idx_dir(directory, truth, compress)
    return truth


def _class_templates(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Ten templates of `shape` ([C,] H, W), each the union of three random rectangles of random
    intensity (per channel): shapes a CNN can tell apart."""
    templates = np.zeros((10, *shape), dtype=np.float32)
    height, width = shape[-2:]
    for template in templates:
        for _ in range(3):
            top, left = rng.integers(2, height - 10), rng.integers(2, width - 10)
            h, w = rng.integers(3, 10, size=2)
            intensity = rng.uniform(0.5, 1.0, size=(*shape[:-2], 1, 1))
            template[..., top : top + h, left : left + w] = intensity
    return templates


def learnable_images(
    n: int, shape: tuple[int, ...], rng: np.random.Generator, templates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` uint8 images of `shape` and labels in 0..9: a class template shifted by up to 2 pixels,
    dimmed at random, plus pixel noise. Returns images, labels and the templates (pass them back to
    draw a test split of the same classes)."""
    templates = _class_templates(rng, shape) if templates is None else templates
    labels = rng.integers(0, 10, n)
    shifts = rng.integers(-2, 3, size=(n, 2))
    images = np.stack(
        [np.roll(templates[y], tuple(s), axis=(-2, -1)) for y, s in zip(labels, shifts, strict=True)]
    )
    images *= rng.uniform(0.6, 1.0, size=(n,) + (1,) * len(shape)).astype(np.float32)
    images += rng.normal(0.0, 0.08, size=images.shape).astype(np.float32)
    pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    return pixels, labels.astype(np.uint8), templates


def write_fashion_mnist_like(
    directory: Path, train: int = FAKE_TRAIN_IMAGES, test: int = FAKE_TEST_IMAGES, seed: int = 0
) -> Path:
    """Write a learnable 10-class stand-in for Fashion-MNIST as gzipped IDX files in `directory`.

    The same seed gives the same bytes. Returns `directory`.
    """
    rng = np.random.default_rng(seed)
    train_x, train_y, templates = learnable_images(train, (28, 28), rng)
    test_x, test_y, _ = learnable_images(test, (28, 28), rng, templates)
    write_idx_dir(directory, {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y})
    return directory


def write_cifar10_like(directory: Path, train: int, test: int, seed: int = 0) -> Path:
    """Write a learnable stand-in for CIFAR-10 in its python format (`cifar-10-batches-py` with five
    pickled training batches, a test batch and `batches.meta`) under `directory`. Returns `directory`."""
    rng = np.random.default_rng(seed)
    train_x, train_y, templates = learnable_images(train, (3, 32, 32), rng)
    test_x, test_y, _ = learnable_images(test, (3, 32, 32), rng, templates)
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (rows, labels) in enumerate(
        zip(np.array_split(train_x, 5), np.array_split(train_y, 5), strict=True), start=1
    ):
        batch = {
            b"batch_label": b"training batch",
            b"labels": labels.tolist(),
            b"data": rows.reshape(-1, 3072),
        }
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test_batch = {b"labels": test_y.tolist(), b"data": test_x.reshape(-1, 3072)}
    (folder / "test_batch").write_bytes(pickle.dumps(test_batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"class"] * 10}, protocol=2))
    return directory
