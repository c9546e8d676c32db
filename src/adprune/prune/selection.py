"""Which channels a prune removes: the one place that turns scores and widths into channel indices.

Every choice of channels passes through here: a prune (scores from the importance, widths from the
width policy), the ranking trigger (what a prune would remove now), the trial prune (the smallest
removal a group allows) and shrinking a fresh model to saved widths (the first channels stay). One
rule: in each group the lowest-scoring channels go (ties: the higher index goes). Where grouped
convolutions or group norms split a group into `blocks` equal blocks, its width is first rounded up
to a multiple of the blocks (`whole_blocks`) and the same positions go from every block, ranked by
their mean score; where a grouped layer ties only part of a group together, whole removal units go,
lowest mean score first, and every tied set keeps a unit (see `blocks.py`). A group without a score
(no training forward reached it, so nothing says which of its channels are idle) keeps its width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .groups import ChannelGroup


def whole_blocks(planned: Mapping[str, int], groups: Sequence[ChannelGroup]) -> dict[str, int]:
    """`planned` with each group read by grouped layers rounded up to a multiple of its blocks (never
    wider than the group)."""
    rounded = dict(planned)
    for group in groups:
        if group.blocks > 1 and group.name in rounded:
            rounded[group.name] = min(
                group.width, math.ceil(rounded[group.name] / group.blocks) * group.blocks
            )
    return rounded


def channels_to_remove(scores: torch.Tensor, keep: int, blocks: int = 1) -> list[int]:
    """Indices of the `len(scores) - keep` lowest-scoring channels (ties: the higher index goes).

    With `blocks > 1` the channels form that many equal consecutive blocks and `keep` must be a
    multiple of `blocks`: the positions whose score, averaged over the blocks, is lowest go from
    every block.
    """
    width = len(scores)
    if blocks > 1:
        if width % blocks or keep % blocks:
            raise ValueError(f"{width} channels in {blocks} blocks cannot keep {keep}")
        size = width // blocks
        per_position = torch.as_tensor(scores, dtype=torch.float64).reshape(blocks, size).mean(0)
        positions = channels_to_remove(per_position, keep // blocks)
        return [b * size + p for b in range(blocks) for p in positions]
    values = [float(s) for s in scores]
    order = sorted(range(width), key=lambda c: (-values[c], c))
    return sorted(order[keep:])


def units_to_remove(
    scores: Sequence[float], keep: int, units: Sequence[tuple[int, ...]], tied: Sequence[set[int]] = ()
) -> list[int]:
    """The channels to remove so that about `keep` stay: whole units, lowest mean score first (ties:
    the unit with the higher first channel goes), skipping a unit that would overshoot or would
    leave a set of `tied` channels (one constrained layer's) empty. At least `keep` channels stay."""
    budget = len(scores) - keep
    order = sorted(units, key=lambda u: (sum(float(scores[c]) for c in u) / len(u), -u[0]))
    removed: set[int] = set()
    for unit in order:
        if len(unit) > budget:
            continue
        if any(tied_set <= removed | set(unit) for tied_set in tied):
            continue
        removed.update(unit)
        budget -= len(unit)
    return sorted(removed)


def group_removal(group: ChannelGroup, scores: torch.Tensor, keep: int) -> list[int]:
    """The channels to remove from `group` so that `keep` stay (`channels_to_remove`, or whole units
    where grouped layers tie only some channels together: then at least `keep` stay)."""
    if group.units:
        return units_to_remove([float(s) for s in scores], keep, group.units, group.tied)
    return channels_to_remove(scores, keep, group.blocks)


def removal(
    scores: Mapping[str, torch.Tensor], widths: Mapping[str, int], groups: Sequence[ChannelGroup]
) -> dict[str, list[int]]:
    """The channels to remove from every group that `widths` narrows. A group absent from `scores`
    or from `widths`, or with a NaN score (a diverged measurement), keeps its width; groups that
    would lose nothing are left out."""
    chosen = {
        g.name: group_removal(g, scores[g.name], widths[g.name])
        for g in groups
        if g.name in scores
        and g.name in widths
        and widths[g.name] < g.width
        and not bool(torch.isnan(torch.as_tensor(scores[g.name])).any())
    }
    return {name: channels for name, channels in chosen.items() if channels}


def keep_first(group: ChannelGroup, keep: int) -> list[int]:
    """The channels to remove from `group` so that its first `keep` stay (blocks and units honoured):
    how a freshly built model is shrunk to widths saved with its weights."""
    return group_removal(group, torch.arange(group.width, 0, -1, dtype=torch.float64), keep)


def smallest_removal(group: ChannelGroup) -> list[int]:
    """The least a prune can take from `group`: the last position of every block or, where grouped
    layers tie only some channels together, the largest unit that leaves every tied set a channel
    (empty when no unit can go)."""
    if group.units:
        allowed = [u for u in group.units if not any(tied <= set(u) for tied in group.tied)]
        return list(max(allowed, key=lambda u: (len(u), u[0]))) if allowed else []
    size = group.width // group.blocks
    return [b * size + size - 1 for b in range(group.blocks)]
