"""Folder datasets: TinyImageNet (`tiny-imagenet-200`) and a `train/<class>/`, `val/<class>/` folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ...errors import AdpruneError
from .splits import Augment, DatasetSplits, make_splits, not_found

_IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

_Files = tuple[list[Path], list[int]]  # image files and their labels


def _read_image(path: Path, size: int) -> np.ndarray:
    """One image as RGB uint8 `[size, size, 3]`: centre-cropped to square and resized if needed."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
            rgb = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise AdpruneError(f"cannot read image {path} ({exc}); remove or replace it") from exc
    if rgb.size != (size, size):
        rgb = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def _read_images(paths: Sequence[Path], size: int) -> torch.Tensor:
    """Images as uint8 `[N, 3, size, size]`, decoded in a thread pool (PIL releases the GIL)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def read_chunk(start: int) -> None:
        for i in range(start, min(start + 256, len(paths))):
            out[i] = _read_image(paths[i], size)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read_chunk, range(0, len(paths), 256)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _image_files(directory: Path) -> list[Path]:
    """Image files below `directory` (recursively, by extension), sorted."""
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in _IMAGE_EXTENSIONS and p.is_file())


def _round_robin(per_class: Sequence[Sequence[Path]]) -> _Files:
    """Files and labels ordered sample 0 of every class, then sample 1 of every class, and so on."""
    ranked = sorted(
        (rank, label, path) for label, files in enumerate(per_class) for rank, path in enumerate(files)
    )
    return [path for _, _, path in ranked], [label for _, label, _ in ranked]


def _folder_splits(
    name: str,
    train: _Files,
    test: _Files,
    num_classes: int,
    size: int,
    subset: int | None,
) -> DatasetSplits:
    """Read the listed image files (only the first `subset` training ones) into a `DatasetSplits`."""
    train_files, train_labels = train[0][:subset], train[1][:subset]
    return make_splits(
        name,
        (_read_images(train_files, size), torch.tensor(train_labels, dtype=torch.int64)),
        (_read_images(test[0], size), torch.tensor(test[1], dtype=torch.int64)),
        num_classes,
        Augment(crop_padding=size // 8, hflip=True),
    )


def _tiny_listing(directory: Path) -> tuple[_Files, _Files, int]:
    """Training and validation files with labels (index in sorted wnids.txt), and the class count."""
    wnids = sorted(
        {line.strip() for line in (directory / "wnids.txt").read_text().splitlines() if line.strip()}
    )
    index = {wnid: i for i, wnid in enumerate(wnids)}
    per_class = []
    for wnid in wnids:
        files = _image_files(directory / "train" / wnid / "images")
        if not files:
            raise AdpruneError(
                f"no training images in {directory / 'train' / wnid / 'images'}; re-extract the archive"
            )
        per_class.append(files)
    annotations = directory / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise AdpruneError(f"{annotations} is missing; re-extract tiny-imagenet-200.zip")
    val_files, val_labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise AdpruneError(f"{annotations} line {number} names no class from wnids.txt: {line!r}")
        val_files.append(directory / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])
    return _round_robin(per_class), (val_files, val_labels), len(wnids)


def load_tiny(
    name: str, root: Path, *, download: bool, subset: int | None, image_size: int | None
) -> DatasetSplits:
    """TinyImageNet from a tiny-imagenet-200 folder (`root` or `root/tiny-imagenet-200`)."""
    dirs = [root, root / "tiny-imagenet-200"]
    directory = next((d for d in dirs if (d / "wnids.txt").is_file()), None)
    if directory is None:
        hint = f"pass --data-dir, or unzip {_TINY_URL} there (it is not downloaded automatically)"
        raise not_found(name, root, "wnids.txt", dirs, hint)
    train, test, num_classes = _tiny_listing(directory)
    return _folder_splits(name, train, test, num_classes, image_size or 64, subset)


def _imagefolder_listing(root: Path) -> tuple[_Files, _Files, int]:
    """Train and val/test files with labels (index in sorted train class folders), and the class count."""
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise AdpruneError(f"{root / 'train'} has no class folders; expected train/<class>/<images>")
    per_class = []
    for cls in classes:
        files = _image_files(root / "train" / cls)
        if not files:
            raise AdpruneError(f"{root / 'train' / cls} holds no images; add some or remove the folder")
        per_class.append(files)
    test_dir = root / "val" if (root / "val").is_dir() else root / "test"
    if not test_dir.is_dir():
        raise AdpruneError(f"{root} has train/ but neither val/ nor test/; add val/<class>/<images>")
    index = {cls: i for i, cls in enumerate(classes)}
    test_files, test_labels = [], []
    for cls_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        if cls_dir.name not in index:
            raise AdpruneError(
                f"{cls_dir} is a class with no folder in {root / 'train'}; add one or remove it"
            )
        files = _image_files(cls_dir)
        test_files += files
        test_labels += [index[cls_dir.name]] * len(files)
    return _round_robin(per_class), (test_files, test_labels), len(classes)


def load_imagefolder(
    name: str, root: Path, *, download: bool, subset: int | None, image_size: int | None
) -> DatasetSplits:
    """A train/<class>/ + val/<class>/ (or test/) folder, resized to `image_size`."""
    if image_size is None:
        raise AdpruneError(
            "imagefolder needs an image size (--image-size, e.g. 64): images are resized to it"
        )
    if not (root / "train").is_dir():
        raise not_found(name, root, "train/<class>/", [root], "pass --data-dir pointing at train/ and val/")
    train, test, num_classes = _imagefolder_listing(root)
    return _folder_splits(name, train, test, num_classes, image_size, subset)
