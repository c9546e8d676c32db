"""DensityMonitor: per-channel activation density counted during training forwards.

For every probe of every group (see `groups.py`) a forward hook adds, per channel, the number of
positive values and the number of values seen. Counting `> 0` equals counting non-zeros after ReLU,
and equals counting positive pre-activations for GELU, SiLU, Hardswish or LeakyReLU, because each of
those is positive exactly where its input is. Counts stay on the device; nothing is read back to
the host until `read()`, once per epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import AdpruneError
from .groups import ChannelGroup


class _Counter:
    """Positive-value counts per channel of one module's input or output, kept on its device.

    Channels lie along `channel_dim`; when that dim does not have `channels` entries but exactly one
    other dim does (a norm that reads a channels-last tensor), that one is used.
    """

    def __init__(self, channel_dim: int = 1, channels: int | None = None, gate=lambda: True) -> None:
        self.channel_dim = channel_dim
        self.channels = channels
        self.gate = gate  # whether this forward is one of the counted ones
        self.positives: torch.Tensor | None = None
        self.values_per_channel = 0

    def count_input(self, module: nn.Module, inputs: tuple) -> None:
        if module.training and inputs and torch.is_tensor(inputs[0]) and self.gate():
            self._count(inputs[0].detach())

    def count_output(self, module: nn.Module, inputs: tuple, output) -> None:
        if module.training and torch.is_tensor(output) and self.gate():
            self._count(output.detach())

    def _count(self, x: torch.Tensor) -> None:
        channel_dim = self.channel_dim % x.dim() if x.dim() > 1 else 0
        if self.channels is not None and x.shape[channel_dim] != self.channels:
            matches = [d for d in range(1, x.dim()) if x.shape[d] == self.channels]
            if len(matches) == 1:
                channel_dim = matches[0]
        per_channel = x.numel() // x.shape[channel_dim]
        counts = _positive_counts(x, channel_dim, per_channel)
        if self.positives is None or self.positives.shape != counts.shape:
            self.positives = counts.long()
            self.values_per_channel = 0
        else:
            self.positives += counts
        self.values_per_channel += per_channel

    def reset(self) -> None:
        self.positives = None
        self.values_per_channel = 0


def _positive_counts(x: torch.Tensor, channel_dim: int, per_channel: int) -> torch.Tensor:
    """Per-channel number of positive values of `x` (int32 when that cannot overflow, else int64).

    The fast path sums the contiguous trailing (spatial) dims first with an int16 accumulator, then
    the leading (batch) dims: about 4x cheaper on CPU than one reduction over every other dim. A
    channels-last image tensor is summed over its rows, channels being its contiguous last dim.
    """
    positive = x > 0
    if x.dim() == 4 and channel_dim == 1 and positive.is_contiguous(memory_format=torch.channels_last):
        rows = positive.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        return rows.sum(0, dtype=torch.int32 if per_channel < 2**31 else torch.int64)
    inner = math.prod(x.shape[channel_dim + 1 :])
    if per_channel < 2**31 and inner < 2**15 and positive.is_contiguous():
        outer = math.prod(x.shape[:channel_dim])
        spatial = positive.view(outer, x.shape[channel_dim], inner).sum(-1, dtype=torch.int16)
        return spatial.sum(0, dtype=torch.int32)
    reduce_dims = tuple(d for d in range(x.dim()) if d != channel_dim)
    return positive.sum(dim=reduce_dims, dtype=torch.int32 if per_channel < 2**31 else torch.int64)


DEAD_DENSITY = 0.02
"""A channel whose density is below this is near-dead: it is almost never active."""


def density_stats(channel_densities: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """How much the densities say about the network, from one epoch's per-channel densities.

    `spread`: the largest minus the smallest group density (group density = mean over its
    channels); near 0 means every layer looks alike, so the plan cuts every layer by the same share.
    `dead_share`: the share of all channels (over every group) with density below `DEAD_DENSITY`.
    Both are NaN without any density.
    """
    if not channel_densities:
        return {"spread": math.nan, "dead_share": math.nan}
    means = [float(d.mean()) for d in channel_densities.values()]
    every = torch.cat([d.flatten().double() for d in channel_densities.values()])
    return {"spread": max(means) - min(means), "dead_share": float((every < DEAD_DENSITY).double().mean())}


def checked_densities(
    channel_densities: Mapping[str, torch.Tensor], widths: Mapping[str, int], skipped: Mapping[str, str]
) -> dict[str, torch.Tensor]:
    """Densities given by hand, checked: one float64 CPU value per channel of an existing group
    (groups in `skipped` are dropped). Raises AdpruneError naming the first bad entry."""
    given = {}
    for name, values in channel_densities.items():
        if name in skipped:
            continue
        if name not in widths:
            raise AdpruneError(
                f"channel_densities names '{name}', which is not a channel group; "
                f"groups are {', '.join(widths) or 'none'} (see ADPruner.widths)"
            )
        values = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
        if values.numel() != widths[name]:
            raise AdpruneError(
                f"channel_densities['{name}'] has {values.numel()} values but the group has "
                f"{widths[name]} channels: give one density per channel"
            )
        given[name] = values
    return given


def _in_channels(module: nn.Module) -> int | None:
    channels = getattr(module, "in_channels", getattr(module, "in_features", None))
    return channels if isinstance(channels, int) else None


class DensityMonitor:
    """Counts activation density for `groups` of `model` while the model trains.

    Only forwards in training mode count. `read()` returns, per group name, the density of each of
    the group's channels (float64, CPU): positives / values over every consumer since the last
    `reset()`. Under torch.distributed the counts are summed over the ranks of `process_group` (the
    default group when None) before division, so every rank reads the same densities, and `read()`
    also sums `samples_seen` over them. Samples are counted where a forward enters: at `entry` (see
    `modes.entry_module`; the model itself when None).

    `every=k` counts activations on every k-th training forward only (the 1st, the (k+1)-th, ...
    since `reset()`); samples are still counted on all of them. A density is then the mean over the m
    counted batches of its per-batch density instead of over all M: an estimate whose standard error
    is `s / sqrt(m) * sqrt(1 - m / M)`, s the standard deviation of that density across batches (for
    a group's density, which the plan reads, s is small; README, "Cost of the monitor", has measured
    values). Batches are counted at a fixed stride, so a density that drifts within the epoch is
    estimated with a bias of up to k/2 batches of drift.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Iterable[ChannelGroup],
        *,
        entry: nn.Module | None = None,
        process_group: Any = None,
        every: int = 1,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.groups = list(groups)
        self.samples_seen = 0
        self.process_group = process_group
        self.every = every
        self._forwards = 0
        self._counting = True
        self._paused = False
        self._counters: dict[tuple[str, bool], _Counter] = {}
        self._handles = [(entry or model).register_forward_pre_hook(self._count_samples)]
        for group in self.groups:
            for probe in group.probes:
                key = (probe.module_name, probe.reads_output)
                if key not in self._counters:
                    module = model.get_submodule(probe.module_name)
                    channels = group.width if probe.reads_output else _in_channels(module)
                    counter = self._counters[key] = _Counter(probe.channel_dim, channels, self._counts_now)
                    self._handles.append(
                        module.register_forward_hook(counter.count_output)
                        if probe.reads_output
                        else module.register_forward_pre_hook(counter.count_input)
                    )

    def _count_samples(self, module: nn.Module, inputs: tuple) -> None:
        if module.training and not self._paused and inputs and torch.is_tensor(inputs[0]):
            self.samples_seen += inputs[0].shape[0]
            self._counting = self._forwards % self.every == 0
            self._forwards += 1

    def _counts_now(self) -> bool:
        return self._counting and not self._paused

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Within the block, training-mode forwards count nothing (a BatchNorm re-estimate, say)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def reset(self) -> None:
        """Forget every count, to start a new window."""
        self.samples_seen = 0
        self._forwards = 0
        self._counting = True
        for counter in self._counters.values():
            counter.reset()

    def detach(self) -> None:
        """Remove every hook from the model; the monitor counts nothing afterwards."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _gathered_counts(self) -> dict[tuple[str, bool], tuple[torch.Tensor, int]]:
        names = [n for n, c in self._counters.items() if c.positives is not None]
        if not names:
            return {}
        flat = torch.cat([self._counters[n].positives.flatten() for n in names])
        values = [self._counters[n].values_per_channel for n in names]
        totals = torch.tensor([*values, self.samples_seen], device=flat.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flat, group=self.process_group)
            dist.all_reduce(totals, group=self.process_group)
        flat, totals = flat.cpu(), totals.cpu().tolist()
        self.samples_seen = totals.pop()
        gathered, offset = {}, 0
        for name, total in zip(names, totals, strict=True):
            size = self._counters[name].positives.numel()
            gathered[name] = (flat[offset : offset + size], total)
            offset += size
        return gathered

    def read(self) -> dict[str, torch.Tensor]:
        """Per-channel densities of every group that was seen in a training forward since `reset()`.

        A group with no counted values is absent from the result. Reading syncs with the device
        once and, under torch.distributed, does one all-reduce: call it once per epoch.
        """
        counts = self._gathered_counts()
        densities = {}
        for group in self.groups:
            positives = torch.zeros(group.width, dtype=torch.float64)
            values = torch.zeros(group.width, dtype=torch.float64)
            for probe in group.probes:
                key = (probe.module_name, probe.reads_output)
                if key not in counts:
                    continue
                probe_positives, total = counts[key]
                tensor_idxs = torch.tensor(probe.tensor_idxs, dtype=torch.long)
                channel_idxs = torch.tensor(probe.channel_idxs, dtype=torch.long)
                positives.index_add_(0, channel_idxs, probe_positives[tensor_idxs].double())
                values.index_add_(0, channel_idxs, torch.full_like(channel_idxs, total, dtype=torch.float64))
            if bool((values > 0).all()):
                densities[group.name] = positives / values
        return densities
