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

A normalisation layer that applies its own activation (timm's `BatchNormAct2d`, which most timm CNNs
use) is an activation after the group's layers, and so is an activation written by hand: a product
`x * gate(x)` of a tensor and a positive gate of that same tensor (`x * x.sigmoid()`,
`x * F.relu6(x + 3) / 6`), which is positive exactly where `x` is.

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
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
_ACTIVATION_NAMES = ("relu", "gelu", "silu", "swish", "mish", "elu", "sigmoid", "hardtanh")
_GATE_WALK = 8  # how many single-input operations a hand-written gate may apply to its input


def is_activation_module(module: object) -> bool:
    """Whether `module` is an activation layer: PyTorch's, or one named like one (timm's `Swish`,
    `HardSwish`, `GELU`, ...)."""
    if isinstance(module, _ACTIVATION_MODULES):
        return True
    name = type(module).__name__.lower()
    return isinstance(module, nn.Module) and any(key in name for key in _ACTIVATION_NAMES)


def fused_activation(module: object) -> bool:
    """Whether `module` is a normalisation layer that applies an activation of its own (`.act`, as in
    timm's `BatchNormAct2d` / `GroupNormAct`)."""
    return isinstance(module, _NORMS) and is_activation_module(getattr(module, "act", None))


def _grad_fn_name(node) -> str:
    grad_fn = getattr(node, "grad_fn", None)
    return type(grad_fn).__name__ if grad_fn is not None else ""


def _activation_op(node) -> bool:
    return isinstance(node.module, _ACTIVATION_MODULES) or any(k in _grad_fn_name(node) for k in _ACTIVATIONS)


def _gates_itself(node) -> bool:
    """Whether `node` is a hand-written activation: the product of a tensor and an activation
    (sigmoid, relu6, ...) computed from that tensor through single-input operations only."""
    if "MulBackward" not in _grad_fn_name(node) or len(node.inputs) != 2:
        return False
    for gate, value in (node.inputs, node.inputs[::-1]):
        current, activated = gate, False
        for _ in range(_GATE_WALK):
            if current is value:
                return activated
            activated = activated or _activation_op(current)
            if len(current.inputs) != 1 or isinstance(current.module, _LAYERS):
                break
            current = current.inputs[0]
    return False


class Reading(enum.Enum):
    """What a consumer reads of a group."""

    ACTIVATIONS = "activations"
    POOLED = "pooled activations"
    LINEAR = "values with no activation after the group's layers"


def _kind(node) -> Reading | None:
    """The reading an operation decides, or None for one that is walked through."""
    if _activation_op(node) or fused_activation(node.module) or _gates_itself(node):
        return Reading.ACTIVATIONS
    if isinstance(node.module, _POOLING_MODULES) or any(key in _grad_fn_name(node) for key in _POOLING):
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
        kind = Reading.ACTIVATIONS if fused_activation(node.module) else None
        kind = kind or (Reading.LINEAR if node in stops else _kind(node))
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
