"""`BatchLoader`: a dataset held on the training device, served as normalised, augmented batches."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import AdpruneError
from .splits import Augment


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
        self.channels_last = channels_last
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
