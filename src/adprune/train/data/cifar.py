"""CIFAR-10 and CIFAR-100 in the python format torchvision downloads, read with a restricted unpickler."""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ...errors import AdpruneError
from .splits import (
    Augment,
    DatasetSplits,
    first_samples,
    labels_tensor,
    make_splits,
    not_found,
    resize_images,
)


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    num_classes: int
    url: str
    md5: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR = {
    "cifar10": _CifarSpec(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        label_key="labels",
        num_classes=10,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        mean=(0.49139968, 0.48215841, 0.44653091),
        std=(0.24703223, 0.24348513, 0.26158784),
    ),
    "cifar100": _CifarSpec(
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        label_key="fine_labels",
        num_classes=100,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        mean=(0.50707516, 0.48654887, 0.44091784),
        std=(0.26733429, 0.25643846, 0.27615047),
    ),
}


def _pickle_allowlist() -> dict[tuple[str, str], Callable[..., object]]:
    """The only globals a pickled numpy array needs, under both numpy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Callable[..., object]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global (no code execution)."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path
        self._allowed = _pickle_allowlist()

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        found = self._allowed.get((module, name))
        if found is None:
            raise AdpruneError(
                f"{self._path} asks to load {module}.{name}, which no CIFAR batch needs; refusing to "
                "unpickle it: delete the file and download the dataset again"
            )
        return found


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 `[N, 3, 32, 32]` and labels int64 `[N]` from one CIFAR pickle."""
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, path).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as exc:
        raise AdpruneError(
            f"cannot read {path} as a CIFAR batch ({exc}); delete it and download again"
        ) from exc
    if not isinstance(batch, dict):
        raise AdpruneError(f"{path} does not hold a dict as a CIFAR batch does; replace the file")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise AdpruneError(f"{path} has no uint8 'data' array of shape [N, 3072]; replace the file")
    if labels is None or len(labels) != data.shape[0]:
        raise AdpruneError(f"{path} has no '{label_key}' list with one label per image; replace the file")
    images = torch.from_numpy(np.require(data, requirements=("C", "W")).reshape(-1, 3, 32, 32))
    return images, labels_tensor(labels, num_classes, path)


def _cifar_dir(spec: _CifarSpec, dirs: Sequence[Path]) -> Path | None:
    """The first directory holding every batch file of `spec`."""
    for directory in dirs:
        if all((directory / f).is_file() for f in (*spec.train_files, spec.test_file)):
            return directory
    return None


def _download_cifar(name: str, spec: _CifarSpec, root: Path) -> None:
    """Download and extract the official archive (md5-checked) into `root`."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(spec.url, download_root=str(root), md5=spec.md5)
    except (OSError, RuntimeError) as exc:
        raise AdpruneError(f"downloading {name} from {spec.url} failed ({exc}); check the network") from exc


def load_cifar(
    name: str, root: Path, *, download: bool, subset: int | None, image_size: int | None
) -> DatasetSplits:
    """CIFAR-10 or CIFAR-100 from the python pickles (downloaded when asked)."""
    spec = _CIFAR[name]
    dirs = [root / spec.folder, root]
    directory = _cifar_dir(spec, dirs)
    if directory is None and download:
        _download_cifar(name, spec, root)
        directory = _cifar_dir(spec, dirs)
    if directory is None:
        raise not_found(name, root, spec.train_files[0], dirs, "pass --data-dir or --download")
    parts = [_read_cifar_batch(directory / f, spec.label_key, spec.num_classes) for f in spec.train_files]
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    test_images, test_labels = _read_cifar_batch(directory / spec.test_file, spec.label_key, spec.num_classes)
    images, labels = first_samples(*train, subset)
    augment = Augment(crop_padding=(image_size or 32) // 8, hflip=True)
    return make_splits(
        name,
        (resize_images(images, image_size), labels),
        (resize_images(test_images, image_size), test_labels),
        spec.num_classes,
        augment,
        stats=(spec.mean, spec.std),
    )
