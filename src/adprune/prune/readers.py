"""How the next layers read a channel group: through an activation, through pooling, or linearly.

Walking back from a consumer layer through the traced graph towards the group's own layers, the
first operation met on each path decides what the consumer reads:

- an activation (ReLU, ReLU6, GELU, SiLU, Hardswish, LeakyReLU, ...): the consumer reads activations,
  and counting its input's positive values is the group's activation density. A sigmoid gate (the
  scale of a squeeze-excitation block) counts as one: the gated product is zero exactly where the
  activation it multiplies is;
- a pooling or mean before any activation: the consumer reads pooled activations (max-pooling
  makes them look denser, a global mean makes them all positive), so its input says little about
  how many activations are non-zero;
- the group's own layers, with no activation on the way (a linear bottleneck, as in MobileNetV2):
  the consumer reads every value, zero or not, so density says nothing about what it uses.

Operations that only move or combine values (additions of residual branches, concatenations,
reshapes, dropout) are walked through.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import torch_pruning as tp
from torch import nn

_ACTIVATIONS = ("Relu", "Hardtanh", "Gelu", "Silu", "Hardswish", "LeakyRelu", "Elu", "Mish", "Softplus",
                "Threshold", "Celu", "Selu", "Prelu", "Sigmoid", "Hardsigmoid")  # fmt: skip
_POOLING = ("Pool", "Mean", "Upsample")
_ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Mish,
                       nn.Sigmoid, nn.Hardsigmoid)  # fmt: skip
_POOLING_MODULES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)  # fmt: skip
_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


class Reading(enum.Enum):
    """What a consumer reads of a group."""

    ACTIVATIONS = "activations"
    POOLED = "pooled activations"
    LINEAR = "values with no activation after the group's layers"


def _kind(node) -> Reading | None:
    """The reading an operation decides, or None for one that is walked through."""
    module = node.module
    if isinstance(module, _ACTIVATION_MODULES):
        return Reading.ACTIVATIONS
    if isinstance(module, _POOLING_MODULES):
        return Reading.POOLED
    grad_fn = getattr(node, "grad_fn", None)
    name = type(grad_fn).__name__ if grad_fn is not None else ""
    if any(key in name for key in _ACTIVATIONS):
        return Reading.ACTIVATIONS
    if any(key in name for key in _POOLING):
        return Reading.POOLED
    return None


def reading(graph: tp.DependencyGraph, consumer: nn.Module, members: Iterable[nn.Module]) -> Reading:
    """What `consumer` reads of the group whose out-channel layers are `members`.

    LINEAR when some path back reaches the group's layers without an activation, else POOLED when
    on some path a pooling comes before (nearer the consumer than) the activation, else ACTIVATIONS.
    """
    stops = {graph.module2node[m] for m in members if m in graph.module2node and m is not consumer}
    found, seen = set(), set()
    pending = [(node, False) for node in graph.module2node[consumer].inputs]
    while pending:
        node, pooled = pending.pop()
        if (node, pooled) in seen:
            continue
        seen.add((node, pooled))
        kind = Reading.LINEAR if node in stops else _kind(node)
        if kind is Reading.POOLED:
            pooled = True
        elif kind is not None:
            found.add(Reading.POOLED if pooled and kind is Reading.ACTIVATIONS else kind)
            continue
        if not isinstance(node.module, _LAYERS):  # another layer's output is not this group's
            pending.extend((before, pooled) for before in node.inputs)
    for kind in (Reading.LINEAR, Reading.POOLED):
        if kind in found:
            return kind
    return Reading.ACTIVATIONS
