"""Importance criteria: which channels of a group a prune keeps. Each is a callable on a group.

An importance is any function `importance(group, density, graph) -> scores` where `group` is the
`ChannelGroup` (its `name` is its root layer's module name, `members` every coupled layer's),
`density` the per-channel activation density the last epoch measured (float64, CPU) and `graph`
Torch-Pruning's dependency graph of the model (`graph.model` is the model). It returns one score
per channel, higher stays, or None to fall back to the density. `ADPruner(importance=...)` takes
such a function or the name of a built-in:

- `density`: ADP's own ranking, the densest channels stay;
- `entropy`: the channels whose firing carries the most information stay (density nearest 0.5);
- `l1`: the largest L1 norms of the root layer's output filters stay (Li et al., "Pruning Filters
  for Efficient ConvNets", ICLR 2017);
- `bn_scale`: the largest absolute BatchNorm scales stay (Liu et al., "Network Slimming", ICCV 2017).

`l1` and `bn_scale` use Torch-Pruning's importance classes without per-group normalisation, so
scores compare across groups (a parameter target ranks all channels together).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from ..errors import AdpruneError
from .groups import ChannelGroup, group_handle
from .options import IMPORTANCES

Importance = Callable[[ChannelGroup, torch.Tensor, tp.DependencyGraph], torch.Tensor | None]


def firing_entropy(densities: torch.Tensor) -> torch.Tensor:
    """Binary entropy (bits) of each channel's firing, from its density: 1 for a channel active half
    the time, 0 for one that is never active (it passes nothing) or always active (its ReLU is the
    identity, so it adds nothing a linear map could not)."""
    d = densities.double().clamp(1e-12, 1 - 1e-12)
    return -(d * torch.log2(d) + (1 - d) * torch.log2(1 - d))


def _scorer(kind: str) -> tp.importance.Importance:
    if kind == "l1":
        return tp.importance.MagnitudeImportance(
            p=1, group_reduction="first", normalizer=None, target_types=[nn.modules.conv._ConvNd, nn.Linear]
        )
    return tp.importance.BNScaleImportance(normalizer=None)


@torch.no_grad()
def weight_scores(graph: tp.DependencyGraph, group: ChannelGroup, kind: str) -> torch.Tensor | None:
    """One score per channel of `group` (higher is kept) from its weights: `kind` is l1 or bn_scale.

    None when the group has no layer of the kind the score reads (bn_scale on a group without
    BatchNorm, or l1 on a group whose root has no weight), so the caller can fall back.
    """
    scores = _scorer(kind)(group_handle(graph, group, range(group.width)))
    if scores is None or not torch.is_tensor(scores) or scores.numel() != group.width:
        return None
    return scores.detach().double().cpu()


def by_density(group: ChannelGroup, density: torch.Tensor, graph: tp.DependencyGraph) -> torch.Tensor:
    """ADP's ranking: the densest channels stay."""
    return density


def by_entropy(group: ChannelGroup, density: torch.Tensor, graph: tp.DependencyGraph) -> torch.Tensor:
    """The channels whose firing carries the most information stay (`firing_entropy`)."""
    return firing_entropy(density)


def by_l1(group: ChannelGroup, density: torch.Tensor, graph: tp.DependencyGraph) -> torch.Tensor | None:
    """The largest L1 norms of the root layer's output filters stay."""
    return weight_scores(graph, group, "l1")


def by_bn_scale(group: ChannelGroup, density: torch.Tensor, graph: tp.DependencyGraph) -> torch.Tensor | None:
    """The largest absolute BatchNorm scales stay (None for a group without BatchNorm)."""
    return weight_scores(graph, group, "bn_scale")


_BUILT_IN: dict[str, Importance] = {
    "density": by_density, "entropy": by_entropy, "l1": by_l1, "bn_scale": by_bn_scale,
}  # fmt: skip
assert tuple(_BUILT_IN) == IMPORTANCES, "options.IMPORTANCES names the built-ins in this order"


def resolve_importance(importance: str | Importance) -> Importance:
    """The importance function for a built-in name, or `importance` itself when it is callable.

    Raises AdpruneError for anything else, naming the built-ins.
    """
    if callable(importance):
        return importance
    found = _BUILT_IN.get(importance) if isinstance(importance, str) else None
    if found is None:
        raise AdpruneError(
            f"importance={importance!r:.60} is not valid: give one of {', '.join(IMPORTANCES)} or a "
            "function (group, density, graph) -> one score per channel"
        )
    return found


def channel_scores(
    importance: Importance, group: ChannelGroup, density: torch.Tensor, graph: tp.DependencyGraph
) -> torch.Tensor:
    """`importance`'s scores for `group`, checked: one float64 value per channel on the CPU; the
    density where it returns None. Raises AdpruneError naming the function and the group."""
    scores = importance(group, density, graph)
    if scores is None:
        return density
    name = getattr(importance, "__name__", type(importance).__name__)
    try:
        values = torch.as_tensor(scores, dtype=torch.float64).detach().cpu().flatten()
    except (TypeError, ValueError, RuntimeError) as exc:
        kind = type(scores).__name__
        raise AdpruneError(
            f"importance {name} gave {kind} for group '{group.name}' ({exc}): return one score per channel"
        ) from None
    if values.numel() != group.width:
        raise AdpruneError(
            f"importance {name} gave {values.numel()} scores for group '{group.name}' of {group.width} "
            "channels: return one score per channel"
        )
    return values
