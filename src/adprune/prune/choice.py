"""Which channels a prune removes: widths rounded for grouped convs, widths from a schedule, densities
given by hand, and the channels to remove per group. Functions of the groups' state, no model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from ..errors import AdpruneError
from .blocks import units_to_remove
from .groups import ChannelGroup
from .surgery import channels_to_remove


def whole_blocks(planned: Mapping[str, int], groups: Sequence[ChannelGroup]) -> dict[str, int]:
    """`planned` with each group read by grouped convs rounded up to a multiple of its conv groups."""
    rounded = dict(planned)
    for group in groups:
        if group.blocks > 1 and group.name in rounded:
            rounded[group.name] = min(
                group.width, math.ceil(rounded[group.name] / group.blocks) * group.blocks
            )
    return rounded


def scheduled_widths(
    asked: Mapping[str, int], widths: Mapping[str, int], skipped: Mapping[str, str], epoch: int
) -> dict[str, int]:
    """`widths` with the widths a schedule asks for at `epoch` (skipped groups are left alone).

    Raises AdpruneError for a group that does not exist or a width outside 1..its current width.
    """
    planned = dict(widths)
    for name, width in asked.items():
        if name in skipped:
            continue
        if name not in planned or not 1 <= width <= planned[name]:
            raise AdpruneError(
                f"the width schedule asks for {width} channels in '{name}' at epoch {epoch}, but the "
                f"group {'does not exist' if name not in planned else f'has {planned[name]}'}: give "
                "widths of existing groups, at most their current width"
            )
        planned[name] = width
    return planned


def given_densities(
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


def group_removal(group: ChannelGroup, scores: torch.Tensor, keep: int) -> list[int]:
    """The channels to remove from `group` so that `keep` stay: the lowest `scores` first, whole
    blocks or units where grouped layers tie channels together (then at least `keep` stay)."""
    if group.units:
        return units_to_remove(scores.tolist(), keep, group.units, group.tied)
    return channels_to_remove(scores, keep, group.blocks)


def removal(
    scores: Mapping[str, torch.Tensor], planned: Mapping[str, int], groups: Sequence[ChannelGroup]
) -> dict[str, list[int]]:
    """The channels to remove from every group that `planned` narrows (`group_removal`)."""
    chosen = {
        g.name: group_removal(g, scores[g.name], planned[g.name]) for g in groups if planned[g.name] < g.width
    }
    return {name: channels for name, channels in chosen.items() if channels}
