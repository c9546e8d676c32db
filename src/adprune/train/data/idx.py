"""MNIST and Fashion-MNIST from their IDX files (gzipped or not), padded to 32x32."""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...errors import AdpruneError
from .splits import (
    Augment,
    DatasetSplits,
    channel_stats,
    first_samples,
    labels_tensor,
    make_splits,
    not_found,
    resize_images,
)

_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# name -> (torchvision class and folder name, hflip); the crop padding is image_size // 16 (2 at 32).
_IDX_DATASETS = {"fashion-mnist": ("FashionMNIST", True), "mnist": ("MNIST", False)}


def _idx_dirs(name: str, root: Path) -> list[Path]:
    """Where to look for the IDX files, in order."""
    dirs = [root, root / _IDX_DATASETS[name][0] / "raw"]
    if name == "fashion-mnist":
        dirs.append(_DEBIAN_FASHION_MNIST)
    return dirs


def _idx_path(directory: Path, stem: str) -> Path | None:
    """`directory/stem` if it exists, else `directory/stem.gz` if that does, else None."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx(dirs: Sequence[Path]) -> dict[str, Path] | None:
    """The four IDX files from the first directory that holds all of them."""
    for directory in dirs:
        paths = {key: _idx_path(directory, stem) for key, stem in _IDX_FILES.items()}
        if all(paths.values()):
            return paths  # type: ignore[return-value]
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions (gzip or raw), as a uint8 array."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise AdpruneError(f"cannot read {path} ({exc}); delete it and download again") from exc
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise AdpruneError(f"{path} is not an IDX file of bytes with {ndim} dimension(s); replace it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != math.prod(dims):
        raise AdpruneError(f"{path} is truncated or too long for shape {dims}; delete it and download again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _pad_to_32(images: np.ndarray) -> torch.Tensor:
    """`[N, H, W]` uint8 images zero-padded (centred) to `[N, 1, 32, 32]`."""
    n, h, w = images.shape
    if h > 32 or w > 32:
        raise AdpruneError(f"expected images of at most 32x32 pixels, got {h}x{w}")
    out = np.zeros((n, 1, 32, 32), dtype=np.uint8)
    top, left = (32 - h) // 2, (32 - w) // 2
    out[:, 0, top : top + h, left : left + w] = images
    return torch.from_numpy(out)


def _read_idx_pair(paths: dict[str, Path], part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images padded to `[N, 1, 32, 32]` and int64 labels of the `part` ("train" or "test") split."""
    images = _pad_to_32(_read_idx(paths[f"{part}_images"], 3))
    labels = labels_tensor(_read_idx(paths[f"{part}_labels"], 1), 10, paths[f"{part}_labels"])
    if images.shape[0] != labels.shape[0]:
        raise AdpruneError(
            f"{paths[f'{part}_images']} and its labels disagree on the sample count; replace them"
        )
    return images, labels


def _download_idx(name: str, root: Path) -> None:
    """Fetch the IDX files with torchvision into `root/<FashionMNIST|MNIST>/raw`."""
    from torchvision import datasets

    cls = getattr(datasets, _IDX_DATASETS[name][0])
    try:
        cls(root=str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:
        raise AdpruneError(f"downloading {name} into {root} failed ({exc}); check the network") from exc


def load_idx(
    name: str, root: Path, *, download: bool, subset: int | None, image_size: int | None
) -> DatasetSplits:
    """MNIST or Fashion-MNIST from IDX files, padded to 32x32 (downloaded when asked)."""
    dirs = _idx_dirs(name, root)
    paths = _find_idx(dirs)
    if paths is None and download:
        _download_idx(name, root)
        paths = _find_idx(dirs)
    if paths is None:
        wanted = f"{_IDX_FILES['train_images']}[.gz]"
        raise not_found(name, root, wanted, dirs, "pass --data-dir or --download")
    all_train_images, all_train_labels = _read_idx_pair(paths, "train")
    stats = channel_stats(all_train_images)
    train_images, train_labels = first_samples(all_train_images, all_train_labels, subset)
    train_images = resize_images(train_images, image_size)
    test_images, test_labels = _read_idx_pair(paths, "test")
    augment = Augment(crop_padding=(image_size or 32) // 16, hflip=_IDX_DATASETS[name][1])
    return make_splits(
        name,
        (train_images, train_labels),
        (resize_images(test_images, image_size), test_labels),
        10,
        augment,
        stats=stats,
    )
