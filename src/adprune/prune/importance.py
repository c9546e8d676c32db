"""Per-channel importance scores that rank which channels of a group a prune removes.

`density` is ADP's own ranking (the densest channels stay), `entropy` ranks by the information in
each channel's firing pattern (density nearest 0.5 stays); `l1` and `bn_scale` are the peer methods'
rankings, computed with Torch-Pruning's importance classes: the L1 norm of each output filter of the
group's root layer (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017) and the absolute
BatchNorm scale (Liu et al., "Network Slimming", ICCV 2017), both without per-group normalisation so
that scores can be compared across groups.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from .groups import ChannelGroup, group_handle


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
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=None)
    raise ValueError(f"importance must be l1 or bn_scale here, got {kind!r}")


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
