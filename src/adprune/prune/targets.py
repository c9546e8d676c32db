"""Widths chosen to hit a parameter count: one shrink factor for every layer, or one global ranking.

The peer methods of the benchmark are compared with ADP at the same final parameter count, so their
widths are fitted to a target: `fit_widths` searches a keep fraction in [0, 1] whose widths give
the parameter count closest to the target, counting parameters on a shrunk copy of the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .cost import count_parameters
from .surgery import shrink_to_widths


def parameters_at(model: nn.Module, example_input: torch.Tensor, widths: Mapping[str, int]) -> int:
    """The parameter count `model` would have with its channel groups at `widths` (model untouched)."""
    trial = copy.deepcopy(model)
    shrink_to_widths(trial, example_input, widths)
    return count_parameters(trial)


def _clamp(keep: int, width: int, min_channels: int, blocks: int) -> int:
    keep = math.ceil(max(keep, min(min_channels, width)) / blocks) * blocks
    return min(width, max(keep, blocks))


def uniform_widths(
    widths: Mapping[str, int], keep: float, *, min_channels: int = 1, blocks: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Every group shrunk by the same factor: `round(keep * width)`, at least `min_channels`, a
    multiple of the group's `blocks`, never wider than now."""
    blocks = blocks or {}
    return {
        name: _clamp(round(keep * width), width, min_channels, blocks.get(name, 1))
        for name, width in widths.items()
    }


def ranked_widths(
    scores: Mapping[str, torch.Tensor],
    keep: float,
    *,
    min_channels: int = 1,
    blocks: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Widths that keep the `round(keep * total)` highest-scoring channels over all groups together
    (ties: the earlier group and channel stay), at least `min_channels` per group, a multiple of the
    group's `blocks`, never wider than now."""
    blocks = blocks or {}
    entries = sorted(
        ((-float(s), g, c) for g, (name, values) in enumerate(scores.items()) for c, s in enumerate(values)),
    )
    names = list(scores)
    kept = dict.fromkeys(names, 0)
    for _, g, _ in entries[: round(keep * len(entries))]:
        kept[names[g]] += 1
    return {
        name: _clamp(kept[name], len(values), min_channels, blocks.get(name, 1))
        for name, values in scores.items()
    }


def fit_widths(
    target: int, widths_at: Callable[[float], dict[str, int]], parameters_of: Callable[[dict], int]
) -> dict[str, int]:
    """The widths `widths_at(keep)` whose parameter count is closest to `target`, for keep in [0, 1].

    `widths_at` must grow (weakly) with `keep`; the search bisects keep until both ends give the
    same widths or 40 halvings, then returns the closer end (the larger on a tie).
    """
    low, high = 0.0, 1.0
    low_widths, high_widths = widths_at(low), widths_at(high)
    for _ in range(40):
        if low_widths == high_widths:
            break
        middle = (low + high) / 2
        widths = widths_at(middle)
        if widths in (low_widths, high_widths):
            # the widths only change at a few keep values: move the end that matches
            if widths == low_widths:
                low = middle
            else:
                high = middle
            continue
        if parameters_of(widths) <= target:
            low, low_widths = middle, widths
        else:
            high, high_widths = middle, widths
    below, above = parameters_of(low_widths), parameters_of(high_widths)
    return low_widths if target - below < above - target else high_widths
