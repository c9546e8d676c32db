"""What a model returns, whatever its structure: a tensor, or dicts, lists and tuples of tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def scalar_of(output) -> torch.Tensor:
    """The sum of every floating-point tensor in `output` (as float32): a scalar to call `backward` on.

    Integer tensors and anything that is not a tensor add zero.
    """
    if torch.is_tensor(output):
        return (
            output.float().sum() if output.is_floating_point() else output.new_zeros((), dtype=torch.float32)
        )
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, Sequence) and not isinstance(output, str):
        return sum((scalar_of(o) for o in output), torch.zeros(()))
    return torch.zeros(())


def output_shapes(output) -> list[tuple[int, ...]]:
    """The shape of every tensor in `output`, in the order a depth-first walk meets them."""
    if torch.is_tensor(output):
        return [tuple(output.shape)]
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, Sequence) and not isinstance(output, str):
        return [s for o in output for s in output_shapes(o)]
    return []
