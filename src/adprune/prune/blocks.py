"""Which channels of a group must go together: the blocks of grouped convolutions and group norms.

A layer that splits its channels into `B` equal blocks (a conv with `groups=B`, a GroupNorm) can only
lose the same positions from every block, so that the blocks stay equal. When such a layer covers
all of a group's channels the group's widths move in multiples of `B` (`blocks`). When it covers
only part of them (a grouped conv in one of several concatenated branches) only that part is tied:
its channels form *removal units* of `B` channels (one position of every block), the other channels
go one by one, and every such layer keeps at least one unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch_pruning as tp
from torch import nn

_CONV = nn.modules.conv._ConvNd


@dataclass(frozen=True)
class BlockConstraint:
    """A layer that splits the group channels `channels` (in the layer's own order) into `blocks` blocks."""

    blocks: int
    channels: tuple[int, ...]

    def units(self) -> list[tuple[int, ...]]:
        """One unit per position within a block: that position in every block."""
        size = len(self.channels) // self.blocks
        return [tuple(self.channels[b * size + p] for b in range(self.blocks)) for p in range(size)]


def is_depthwise(module: nn.Module) -> bool:
    """True for a conv whose every output channel reads exactly one input channel of its own."""
    return isinstance(module, _CONV) and module.groups == module.in_channels == module.out_channels > 1


def block_constraint(graph: tp.DependencyGraph, item) -> BlockConstraint | str | None:
    """The constraint a Torch-Pruning group item puts on the group's channels: None when its layer
    does not split them into blocks, a reason string when the split cannot be honoured within the
    group (the item touches only part of the layer's blocks)."""
    module, handler = item.dep.target.module, item.dep.handler
    if not isinstance(module, nn.Module) or is_depthwise(module):
        return None
    pruner = graph.get_pruner_of_module(module)
    if pruner is None:
        return None
    if graph.is_out_channel_pruning_fn(handler):
        blocks, total = pruner.get_out_channel_groups(module), graph.get_out_channels(module)
    elif graph.is_in_channel_pruning_fn(handler):
        blocks, total = pruner.get_in_channel_groups(module), graph.get_in_channels(module)
    else:
        return None
    blocks = int(blocks or 1)
    if blocks == 1:
        return None
    order = sorted(zip(item.idxs, item.root_idxs, strict=True))
    if total is None or total % blocks or len(order) % blocks:
        return f"its channels do not split into the {blocks} groups of {type(module).__name__}"
    size = total // blocks
    positions = {idx % size for idx, _ in order}
    if len(order) != len(positions) * blocks:  # the layer's blocks hold channels of other groups too
        return (
            f"its channels share the {blocks} groups of {type(module).__name__} with channels of other layers"
        )
    return BlockConstraint(blocks, tuple(root for _, root in order))


def channel_layout(
    width: int, constraints: Sequence[BlockConstraint]
) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """`(blocks, units)` of a group of `width` channels under `constraints`.

    When every constraint covers all channels the group moves in multiples of the least common
    multiple of their blocks, and `units` is empty (positions are taken across those blocks).
    Otherwise `blocks` is 1 and `units` lists every removal unit: constrained channels merged into
    the units they must go in together, every other channel alone.
    """
    if all(len(c.channels) == width for c in constraints):
        return math.lcm(1, *(c.blocks for c in constraints)), ()
    parent = list(range(width))

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for constraint in constraints:
        for unit in constraint.units():
            for channel in unit[1:]:
                parent[find(channel)] = find(unit[0])
    merged: dict[int, list[int]] = {}
    for channel in range(width):
        merged.setdefault(find(channel), []).append(channel)
    return 1, tuple(sorted(tuple(unit) for unit in merged.values()))
