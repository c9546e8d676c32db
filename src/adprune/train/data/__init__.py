"""Datasets read into memory as uint8 tensors, and a batch loader that augments on the device.

Every dataset comes back as a `DatasetSplits`: the whole training and test sets as uint8
`[N, C, H, W]` tensors with int64 labels, the per-channel mean and std to normalise with, and the
augmentation the dataset is usually trained with. `BatchLoader` keeps such a tensor on the training
device and turns it into normalised float32 batches with tensor ops only (no DataLoader, no worker
processes), in the style of airbench / hlb-CIFAR10.

Normalisation constants. CIFAR-10 and CIFAR-100 use the standard per-channel mean and std of their
training sets. The MNIST family computes them exactly (float64, from a per-channel histogram of the
256 pixel values) on the whole 32x32 padded training set, whatever `subset` keeps; resizing changes
them negligibly, and only the kept images are resized. Image folders compute them on the training
images they read (after `subset`, which only reads the files it keeps). Every run records the
constants it used in `arch.json`. A channel whose std would be below 1/255 (a constant channel)
uses 1/255, so normalising never divides by 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ...errors import AdpruneError
from .cifar import load_cifar
from .folders import load_imagefolder, load_tiny
from .idx import load_idx
from .loader import BatchLoader, crop_flip
from .splits import Augment, DatasetSplits, first_samples, hold_out_validation

__all__ = [
    "Augment",
    "BatchLoader",
    "DatasetSplits",
    "crop_flip",
    "dataset_names",
    "default_data_dir",
    "first_samples",
    "load_dataset",
]

_LOADERS: dict[str, Callable[..., DatasetSplits]] = {
    "fashion-mnist": load_idx,
    "mnist": load_idx,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "tinyimagenet": load_tiny,
    "imagefolder": load_imagefolder,
}


def dataset_names() -> list[str]:
    """The names `load_dataset` accepts."""
    return list(_LOADERS)


def default_data_dir() -> Path:
    """Where datasets live unless a directory is given: `$ADPRUNE_DATA` if set, else ~/.cache/adprune."""
    env = os.environ.get("ADPRUNE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "adprune"


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    subset: int | None = None,
    image_size: int | None = None,
    val: int = 0,
) -> DatasetSplits:
    """Read dataset `name` from `data_dir` (default `default_data_dir()`) into memory.

    `download=True` fetches a missing dataset where that is possible (MNIST, Fashion-MNIST, CIFAR).
    `subset=N` keeps the first N training samples (all of them if there are fewer); the test set is
    always kept whole. The folder datasets order their training samples round-robin over the
    classes, so a subset is class-balanced. `image_size` resizes the images to that square size
    (required for `imagefolder`); the crop padding of the augmentation scales with it.
    `val=N` holds out N training samples as the validation split: the N that follow the `subset`
    (so a subset trains on the same images with or without a validation split), or the last N of
    the training split without a subset. Raises `AdpruneError` for an unknown name, missing or
    malformed files.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise AdpruneError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
    if subset is not None and subset < 1:
        raise AdpruneError(f"subset must be at least 1, got {subset}; leave it unset to use all samples")
    if image_size is not None and image_size < 1:
        raise AdpruneError(f"image_size must be at least 1, got {image_size}")
    if val < 0:
        raise AdpruneError(f"val must be at least 0, got {val}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    wanted = None if subset is None else subset + val
    splits = loader(name, root, download=download, subset=wanted, image_size=image_size)
    return hold_out_validation(splits, val, subset)
