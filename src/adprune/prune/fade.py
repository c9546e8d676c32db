"""Fading channels out before they are removed, so that training carries the network's function over.

A prune decided at the end of one epoch does not cut the channels at once: during the next epoch
the channels chosen for removal are scaled by a factor that falls linearly from 1 to 0 over the
first `ramp_samples` training samples, while the rest of the network keeps training and takes over
their work. The factor multiplies the group's readers (see `groups`): exactly the tensors through
which the next layers see its channels, so at 0 the model computes what the model without those
channels computes, and the removal at the end of that epoch changes nothing. The factor moves on
the device from sample counts the host already knows: no host sync per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .groups import ChannelGroup


class ChannelFade:
    """Scales channels `remove[group name]` of `groups` in `model` by `factor`, falling from 1 to 0.

    Every training forward advances the ramp by its batch size, counted at `entry` (the model when
    None; see `modes.entry_module`); evaluation forwards see the current factor without moving it.
    `detach()` removes every hook and leaves the model as it was.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        remove: Mapping[str, Sequence[int]],
        ramp_samples: int,
        entry: nn.Module | None = None,
    ) -> None:
        self.ramp_samples = max(1, int(ramp_samples))
        self.samples_seen = 0
        self.factor = 1.0
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

    def _advance(self, module: nn.Module, inputs: tuple) -> None:
        if not (module.training and inputs and torch.is_tensor(inputs[0])):
            return
        self.factor = max(0.0, 1.0 - self.samples_seen / self.ramp_samples)
        self._factor.fill_(self.factor)
        self.samples_seen += inputs[0].shape[0]

    def detach(self) -> None:
        """Remove every hook: the model computes with all its channels again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


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
