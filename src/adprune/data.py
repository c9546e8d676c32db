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

import codecs
import gzip
import math
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .errors import AdpruneError

__all__ = [
    "Augment",
    "BatchLoader",
    "DatasetSplits",
    "crop_flip",
    "dataset_names",
    "default_data_dir",
    "load_dataset",
]

_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_MIN_STD = 1.0 / 255.0
_IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


# --------------------------------------------------------------------------------------------------
# Public containers


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop of the zero-padded image, and random horizontal flip."""

    crop_padding: int  # random crop with this zero padding (0 = none)
    hflip: bool  # random horizontal flip

    @property
    def active(self) -> bool:
        """True when this augmentation changes anything."""
        return self.crop_padding > 0 or self.hflip


@dataclass
class DatasetSplits:
    """A dataset held in memory: uint8 images `[N, C, H, W]` (contiguous, CPU) and int64 labels."""

    name: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]
    augment: Augment

    @property
    def in_channels(self) -> int:
        """Number of image channels (C)."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """Image height (H); every dataset here has square images."""
        return int(self.train_images.shape[2])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one input, `(C, H, W)`."""
        _, c, h, w = self.train_images.shape
        return int(c), int(h), int(w)


# --------------------------------------------------------------------------------------------------
# Entry points


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
) -> DatasetSplits:
    """Read dataset `name` from `data_dir` (default `default_data_dir()`) into memory.

    `download=True` fetches a missing dataset where that is possible (MNIST, Fashion-MNIST, CIFAR).
    `subset=N` keeps the first N training samples (all of them if there are fewer); the test set is
    always kept whole. The folder datasets order their training samples round-robin over the
    classes, so a subset is class-balanced. `image_size` resizes the images to that square size
    (required for `imagefolder`); the crop padding of the augmentation scales with it.
    Raises `AdpruneError` for an unknown name, missing or malformed files.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise AdpruneError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
    if subset is not None and subset < 1:
        raise AdpruneError(f"subset must be at least 1, got {subset}; leave it unset to use all samples")
    if image_size is not None and image_size < 1:
        raise AdpruneError(f"image_size must be at least 1, got {image_size}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return loader(name, root, download=download, subset=subset, image_size=image_size)


# --------------------------------------------------------------------------------------------------
# Shared helpers


def _not_found(name: str, root: Path, wanted: str, dirs: Sequence[Path], hint: str) -> AdpruneError:
    """The one-line error for a dataset that is in none of the places looked at."""
    looked = ", ".join(str(d) for d in dirs)
    return AdpruneError(f"{name} not found in {root} (looked for {wanted} in {looked}); {hint}")


def _first(
    images: torch.Tensor, labels: torch.Tensor, subset: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `subset` samples (all when `subset` is None), as contiguous tensors."""
    if subset is None:
        return images, labels
    return images[:subset].contiguous(), labels[:subset].contiguous()


_MAX_RESIZED_BYTES = 8 * 2**30


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 `[N, C, H, W]` to `size` x `size` (bilinear, antialiased); unchanged if None or equal."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    needed = images.shape[0] * images.shape[1] * size * size
    if needed > _MAX_RESIZED_BYTES:
        raise AdpruneError(
            f"resizing {images.shape[0]} images to {size}x{size} needs {needed / 2**30:.0f} GiB: "
            "choose a smaller --image-size or --subset"
        )
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):
        block = images[start : start + 1024].float()
        block = F.interpolate(block, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + 1024] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std (population, floored at 1/255) of uint8 `[N, C, H, W]`, in [0, 1]."""
    array = images.numpy()
    channels = array.shape[1]
    hist = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, array.shape[0], 1024):
        block = array[start : start + 1024]
        for c in range(channels):
            hist[c] += np.bincount(block[:, c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    counts = hist.sum(axis=1)
    mean = hist @ values / counts
    var = (hist * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / counts
    std = np.maximum(np.sqrt(var), _MIN_STD)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _splits(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    augment: Augment,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> DatasetSplits:
    """Assemble a `DatasetSplits`; `stats=None` computes mean/std from the training images."""
    mean, std = stats if stats is not None else _channel_stats(train[0])
    return DatasetSplits(name, train[0], train[1], test[0], test[1], num_classes, mean, std, augment)


def _labels_tensor(labels: Sequence[int] | np.ndarray, num_classes: int, source: Path) -> torch.Tensor:
    """Labels as int64, checked to lie in `[0, num_classes)`."""
    tensor = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= num_classes):
        raise AdpruneError(
            f"{source} has labels outside 0..{num_classes - 1}; the file is corrupt, replace it"
        )
    return tensor


# --------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)

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
    labels = _labels_tensor(_read_idx(paths[f"{part}_labels"], 1), 10, paths[f"{part}_labels"])
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


def _load_idx(
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
        raise _not_found(name, root, wanted, dirs, "pass --data-dir or --download")
    all_train_images, all_train_labels = _read_idx_pair(paths, "train")
    stats = _channel_stats(all_train_images)
    train_images, train_labels = _first(all_train_images, all_train_labels, subset)
    train_images = _resize(train_images, image_size)
    test_images, test_labels = _read_idx_pair(paths, "test")
    augment = Augment(crop_padding=(image_size or 32) // 16, hflip=_IDX_DATASETS[name][1])
    return _splits(
        name,
        (train_images, train_labels),
        (_resize(test_images, image_size), test_labels),
        10,
        augment,
        stats=stats,
    )


# --------------------------------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100 (python pickles, read with a restricted unpickler)


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
    return images, _labels_tensor(labels, num_classes, path)


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


def _load_cifar(
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
        raise _not_found(name, root, spec.train_files[0], dirs, "pass --data-dir or --download")
    parts = [_read_cifar_batch(directory / f, spec.label_key, spec.num_classes) for f in spec.train_files]
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    test_images, test_labels = _read_cifar_batch(directory / spec.test_file, spec.label_key, spec.num_classes)
    images, labels = _first(*train, subset)
    augment = Augment(crop_padding=(image_size or 32) // 8, hflip=True)
    return _splits(
        name,
        (_resize(images, image_size), labels),
        (_resize(test_images, image_size), test_labels),
        spec.num_classes,
        augment,
        stats=(spec.mean, spec.std),
    )


# --------------------------------------------------------------------------------------------------
# Folder datasets: TinyImageNet and a generic train/<class>/ + val/<class>/ folder


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
    return _splits(
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


def _load_tiny(
    name: str, root: Path, *, download: bool, subset: int | None, image_size: int | None
) -> DatasetSplits:
    """TinyImageNet from a tiny-imagenet-200 folder (`root` or `root/tiny-imagenet-200`)."""
    dirs = [root, root / "tiny-imagenet-200"]
    directory = next((d for d in dirs if (d / "wnids.txt").is_file()), None)
    if directory is None:
        hint = f"pass --data-dir, or unzip {_TINY_URL} there (it is not downloaded automatically)"
        raise _not_found(name, root, "wnids.txt", dirs, hint)
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


def _load_imagefolder(
    name: str, root: Path, *, download: bool, subset: int | None, image_size: int | None
) -> DatasetSplits:
    """A train/<class>/ + val/<class>/ (or test/) folder, resized to `image_size`."""
    if image_size is None:
        raise AdpruneError(
            "imagefolder needs an image size (--image-size, e.g. 64): images are resized to it"
        )
    if not (root / "train").is_dir():
        raise _not_found(name, root, "train/<class>/", [root], "pass --data-dir pointing at train/ and val/")
    train, test, num_classes = _imagefolder_listing(root)
    return _folder_splits(name, train, test, num_classes, image_size, subset)


_LOADERS: dict[str, Callable[..., DatasetSplits]] = {
    "fashion-mnist": _load_idx,
    "mnist": _load_idx,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "tinyimagenet": _load_tiny,
    "imagefolder": _load_imagefolder,
}


# --------------------------------------------------------------------------------------------------
# Batches


def crop_flip(
    images: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Crop each image of a zero-padded batch at a per-sample offset, and mirror selected ones.

    `images` is `[B, C, H, W]` (any dtype); `top`, `left` are int64 `[B]` in `[0, 2 * padding]`;
    `flip` is bool `[B]`. Returns `[B, C, H, W]` where sample i equals
    `pad(images[i], padding)[:, top[i]:top[i] + H, left[i]:left[i] + W]`, flipped along W when
    `flip[i]`. `top = left = padding` is the identity crop. Vectorised: one row gather and one
    column gather for the whole batch, with the flip folded into the column index by `torch.where`.
    """
    b, c, h, w = images.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = F.pad(images, (padding, padding, padding, padding)).reshape(b * c * hp, wp)
    rows_h = torch.arange(h, device=images.device)
    cols_w = torch.arange(w, device=images.device)
    first_row = torch.arange(b * c, device=images.device).view(b, c) * hp + top.view(b, 1)
    picked = padded.index_select(0, (first_row.unsqueeze(-1) + rows_h).view(-1)).view(b, c, h, wp)
    left = left.view(b, 1)
    cols = torch.where(flip.view(b, 1), left + (w - 1) - cols_w, left + cols_w)
    return picked.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 64-bit seed that depends on `(seed, epoch)` only."""
    return int(np.random.SeedSequence((seed, epoch)).generate_state(1, dtype=np.uint64)[0])


class BatchLoader:
    """Iterates (images float32 normalised [B,C,H,W], labels int64 [B]) on `device`.

    The whole uint8 dataset is moved to `device` once. With `train=True` each epoch visits every
    sample once in an order drawn from `(seed, epoch)` (call `set_epoch` before each epoch) and
    applies `augment` as batched tensor ops; with `train=False` order is the dataset's and there is
    no augmentation. Images become `(x / 255 - mean) / std` per channel, to float32 rounding.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        train: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        _check_loader_args(images, labels, batch_size, mean, std, seed)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.augment = augment if train and augment is not None and augment.active else None
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self._images = images.to(self.device).contiguous()
        self._labels = labels.to(self.device, torch.int64)
        std_t = torch.tensor(std, dtype=torch.float64)
        mean_t = torch.tensor(mean, dtype=torch.float64)
        self._scale = (1.0 / (255.0 * std_t)).to(self.device, torch.float32).view(1, -1, 1, 1)
        self._shift = (-mean_t / std_t).to(self.device, torch.float32).view(1, -1, 1, 1)
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @property
    def num_samples(self) -> int:
        """Number of samples in the dataset (including any that `drop_last` leaves out)."""
        return int(self._labels.shape[0])

    def __len__(self) -> int:
        """Number of batches one pass yields."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling and augmentation the next pass uses (deterministic)."""
        if epoch < 0:
            raise AdpruneError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield `len(self)` batches of normalised float32 images and int64 labels on the device."""
        if not self.train:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                end = start + self.batch_size
                yield self._normalise(self._images[start:end]), self._labels[start:end]
            return
        order, top, left, flip = self._epoch_draws()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            batch = self._images.index_select(0, index)
            if self.augment is not None:
                sl = slice(start, start + self.batch_size)
                batch = crop_flip(batch, self.augment.crop_padding, top[sl], left[sl], flip[sl])
            yield self._normalise(batch), self._labels.index_select(0, index)

    def _epoch_draws(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This epoch's sample order, crop offsets and flip mask, drawn on the CPU, moved once."""
        n = self.num_samples
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator)
        pad = self.augment.crop_padding if self.augment is not None else 0
        top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        hflip = self.augment is not None and self.augment.hflip
        flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
        return tuple(t.to(self.device) for t in (order, top, left, flip))  # type: ignore[return-value]

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 `(x / 255 - mean) / std`, in the requested memory format."""
        out = batch.to(dtype=torch.float32, memory_format=self._memory_format)
        return out.mul_(self._scale).add_(self._shift)


def _check_loader_args(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
) -> None:
    """Raise `AdpruneError` unless the `BatchLoader` arguments fit together."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise AdpruneError(
            f"BatchLoader needs uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise AdpruneError(
            f"BatchLoader needs one label per image, got {tuple(labels.shape)} for {images.shape[0]}"
        )
    if batch_size < 1:
        raise AdpruneError(f"batch_size must be at least 1, got {batch_size}")
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise AdpruneError(
            f"mean and std need {channels} values (one per channel), got {len(mean)} and {len(std)}"
        )
    if min(std) <= 0:
        raise AdpruneError(f"std must be positive, got {tuple(std)}")
    if seed < 0:
        raise AdpruneError(f"seed must be non-negative, got {seed}")
