"""What every dataset loader returns (`DatasetSplits`), and the helpers the format modules share."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import AdpruneError

MIN_STD = 1.0 / 255.0


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
    """A dataset held in memory: uint8 images `[N, C, H, W]` (contiguous, CPU) and int64 labels.

    The validation split (possibly empty) is held out of the dataset's training split: no training
    step ever sees it, so decisions taken during training can read it instead of the test set.
    """

    name: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]
    augment: Augment
    val_images: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.uint8), repr=False)
    val_labels: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64), repr=False)

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


def not_found(name: str, root: Path, wanted: str, dirs: Sequence[Path], hint: str) -> AdpruneError:
    """The one-line error for a dataset that is in none of the places looked at."""
    looked = ", ".join(str(d) for d in dirs)
    return AdpruneError(f"{name} not found in {root} (looked for {wanted} in {looked}); {hint}")


def hold_out_validation(splits: DatasetSplits, val: int, subset: int | None) -> DatasetSplits:
    """Split the last `val` training samples of `splits` off as its validation split.

    `splits` holds the first `subset + val` training samples of the dataset (all of them when
    `subset` is None); the result trains on the first `subset` of those that are not held out.
    Raises AdpruneError when fewer than one training sample would be left.
    """
    if val == 0:
        return splits
    total = int(splits.train_labels.shape[0])
    kept = total - val if subset is None else min(subset, total - val)
    if kept < 1:
        raise AdpruneError(
            f"--val-split {val} leaves no training images of the {total} available: hold out fewer"
        )
    images, labels = splits.train_images, splits.train_labels
    return dataclasses.replace(
        splits,
        train_images=images[:kept].contiguous(),
        train_labels=labels[:kept].contiguous(),
        val_images=images[total - val :].contiguous(),
        val_labels=labels[total - val :].contiguous(),
    )


def first_samples(
    images: torch.Tensor, labels: torch.Tensor, subset: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `subset` samples (all when `subset` is None), as contiguous tensors."""
    if subset is None:
        return images, labels
    return images[:subset].contiguous(), labels[:subset].contiguous()


_MAX_RESIZED_BYTES = 8 * 2**30


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
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


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
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
    std = np.maximum(np.sqrt(var), MIN_STD)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def make_splits(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    augment: Augment,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> DatasetSplits:
    """Assemble a `DatasetSplits`; `stats=None` computes mean/std from the training images."""
    mean, std = stats if stats is not None else channel_stats(train[0])
    return DatasetSplits(name, train[0], train[1], test[0], test[1], num_classes, mean, std, augment)


def labels_tensor(labels: Sequence[int] | np.ndarray, num_classes: int, source: Path) -> torch.Tensor:
    """Labels as int64, checked to lie in `[0, num_classes)`."""
    tensor = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= num_classes):
        raise AdpruneError(
            f"{source} has labels outside 0..{num_classes - 1}; the file is corrupt, replace it"
        )
    return tensor
