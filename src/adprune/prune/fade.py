"""Fading channels out before they are removed, and re-estimating BatchNorm statistics on the way.

A prune decided at the end of one epoch does not cut the channels at once: during the next epoch
the channels chosen for removal are scaled by a factor that falls linearly to exactly 0 over the
first `fade` of the epoch's training samples (less the re-estimation window below), while the rest
of the network keeps training and takes over their work. The factor multiplies the group's readers
(see `groups`): exactly the tensors through which the next layers see its channels, so at 0 the
model computes what the model without those channels computes, and the removal at the end of the
epoch changes nothing. The factor moves on the device from sample counts the host already knows:
no host sync per step.

The running statistics of every BatchNorm trail a network whose function changes step by step (an
exponential average with momentum 0.1): evaluated right after a fade with them, a network that
trains well can score near chance. So the last `recalibrate` training batches of the epoch, where
the factor is already 0, re-estimate them: the statistics restart and average those batches
equally (momentum None), and their momentum returns at the cut. This happens inside the training
forwards any loop runs (the weights still train; nothing extra is computed), before any evaluation
at the epoch's end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .groups import ChannelGroup

_NORMS = nn.modules.batchnorm._BatchNorm


class ChannelFade:
    """Scales channels `remove[group name]` of `groups` in `model` down to 0 during one epoch of
    `epoch_samples` training samples (this process's), then re-estimates BatchNorm statistics.

    The factor reaches 0 after `fade * (epoch_samples - window)` samples, where the window is the
    last `recalibrate` batches (at most half the epoch; none when `recalibrate` is 0). Every
    training forward advances the ramp by its batch size, counted at `entry` (the model when None;
    see `modes.entry_module`); evaluation forwards see the current factor without moving it.
    `detach()` removes every hook and restores the BatchNorm momenta.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        remove: Mapping[str, Sequence[int]],
        epoch_samples: int,
        *,
        fade: float = 1.0,
        recalibrate: int = 0,
        entry: nn.Module | None = None,
    ) -> None:
        self.epoch_samples = max(1, int(epoch_samples))
        self.fade = fade
        self.recalibrate = recalibrate
        self.samples_seen = 0
        self.factor = 1.0
        self.ramp_samples: int | None = None  # set by the first training forward, from its batch size
        self.window_start: int | None = None
        self._norms = [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats]
        self._momenta: list[float | None] | None = None  # while re-estimating
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._factor = torch.ones((), device=device)
        self._handles = [(entry or model).register_forward_pre_hook(self._advance)]
        for group in groups:
            removed = set(remove.get(group.name, ()))
            if not removed:
                continue
            for probe in group.readers:
                module = model.get_submodule(probe.module_name)
                positions = [
                    t for t, c in zip(probe.tensor_idxs, probe.channel_idxs, strict=True) if c in removed
                ]
                scale = _Scale(positions, self._factor, probe.channel_dim)
                self._handles.append(
                    module.register_forward_hook(scale.output)
                    if probe.reads_output
                    else module.register_forward_pre_hook(scale.input)
                )

    @property
    def recalibrating(self) -> bool:
        """True once the BatchNorm statistics are being re-estimated (until `detach`)."""
        return self._momenta is not None

    def _plan(self, batch: int) -> None:
        """Where the ramp ends and the re-estimation window starts, from the first batch's size."""
        half = (self.epoch_samples // 2 // batch) * batch
        window = min(self.recalibrate * batch, half) if self._norms else 0
        self.ramp_samples = max(batch, round(self.fade * (self.epoch_samples - window)))
        self.window_start = self.epoch_samples - window if window > 0 else None

    def _advance(self, module: nn.Module, inputs: tuple) -> None:
        if not (module.training and inputs and torch.is_tensor(inputs[0])):
            return
        batch = inputs[0].shape[0]
        if self.ramp_samples is None:
            self._plan(batch)
        before, self.samples_seen = self.samples_seen, self.samples_seen + batch
        self.factor = max(0.0, 1.0 - self.samples_seen / self.ramp_samples)
        self._factor.fill_(self.factor)
        if self.window_start is not None and before >= self.window_start and not self.recalibrating:
            self._momenta = [norm.momentum for norm in self._norms]
            for norm in self._norms:
                norm.reset_running_stats()
                norm.momentum = None  # a plain average over the window's batches

    def detach(self) -> None:
        """Remove every hook and give the BatchNorm layers their momentum back: the model computes
        with all its channels again (before the cut), or as pruned (after it)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._momenta is not None:
            for norm, momentum in zip(self._norms, self._momenta, strict=True):
                norm.momentum = momentum
            self._momenta = None


class _Scale:
    """Multiplies the channels at `positions` along `channel_dim` of a tensor by `factor`."""

    def __init__(self, positions: Sequence[int], factor: torch.Tensor, channel_dim: int) -> None:
        self.positions = list(positions)
        self.factor = factor
        self.channel_dim = channel_dim
        self._dropped: torch.Tensor | None = None

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.channel_dim % x.dim()
        channels = x.shape[dim]
        if self._dropped is None or self._dropped.numel() != channels:
            self._dropped = torch.zeros(channels, device=x.device)
            self._dropped[[p for p in self.positions if p < channels]] = 1.0
        shape = [1] * x.dim()
        shape[dim] = channels
        scale = 1.0 - self._dropped * (1.0 - self.factor)
        return x * scale.view(shape).to(x.dtype)

    def output(self, module: nn.Module, inputs: tuple, output):
        return self._apply(output) if torch.is_tensor(output) else output

    def input(self, module: nn.Module, inputs: tuple):
        if not inputs or not torch.is_tensor(inputs[0]):
            return None
        return (self._apply(inputs[0]), *inputs[1:])
