"""What runs fastest on the training device: the multiple widths are rounded to, the memory layout,
and the optional compilation of the training model.

The defaults come from `bench/realised_speedup.py` (README, "Speed"): on this project's CPU and on
tensor-core GPUs, widths in multiples of 8 in the channels-last layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ROUND_TO = {"cuda": 8, "cpu": 8}
CHANNELS_LAST = {"cuda": True, "cpu": True}


@dataclass(frozen=True)
class Hardware:
    """The resolved choices of a run: the width multiple, channels-last or not, compiled or not."""

    round_to: int
    channels_last: bool
    compile: bool

    def to_dict(self) -> dict[str, object]:
        """For the summary: what the run used, whatever the options asked."""
        return {"round_to": self.round_to, "channels_last": self.channels_last, "compile": self.compile}


def resolve(round_to: int | None, layout: str, compile_model: bool, device: torch.device) -> Hardware:
    """The choices for `device`: `round_to` and `layout` as given, or this device type's defaults
    where they are None / "auto"."""
    kind = device.type if device.type in ROUND_TO else "cpu"
    return Hardware(
        round_to=ROUND_TO[kind] if round_to is None else round_to,
        channels_last=CHANNELS_LAST[kind] if layout == "auto" else layout == "channels-last",
        compile=compile_model,
    )


def apply_layout(model: nn.Module, optimizer: torch.optim.Optimizer | None, hardware: Hardware) -> None:
    """Put the model's 4-d parameters (and their optimizer state) in the run's memory layout, in place:
    the Parameter objects stay the same, so the optimizer and schedulers keep working."""
    if not hardware.channels_last:
        return
    model.to(memory_format=torch.channels_last)
    for state in optimizer.state.values() if optimizer is not None else ():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() == 4:
                state[key] = value.contiguous(memory_format=torch.channels_last)


def training_module(model: nn.Module, wrap, hardware: Hardware) -> nn.Module:
    """What the training loop calls: `wrap(model)` (DDP under several processes), compiled with
    `torch.compile` when asked. Call it again after every prune: the compiled graph is for the old
    shapes (the compile time lands in the training wall time of the next epoch)."""
    wrapped = wrap(model)
    return torch.compile(wrapped) if hardware.compile else wrapped
