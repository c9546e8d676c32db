"""Channel groups: the sets of output channels that must keep one width, found by Torch-Pruning.

A group is named after its root layer (the first producing layer Torch-Pruning meets). Besides its
width it records every *consumer*: a conv or linear layer whose input contains the group's channels,
with the map from that layer's input indices to the group's channel indices. Densities are counted
at those inputs, which is exactly "the tensor the next layer consumes" whatever activation, reuse of
activation modules or residual additions lie between producer and consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

_CONV = nn.modules.conv._ConvNd


@dataclass(frozen=True)
class Consumer:
    """One layer that reads a group's channels: input index `input_idxs[k]` is group channel `channel_idxs[k]`."""

    module_name: str
    input_idxs: tuple[int, ...]
    channel_idxs: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """A prunable set of coupled output channels and the layers that consume them."""

    name: str
    width: int
    members: tuple[str, ...]
    consumers: tuple[Consumer, ...]


def is_depthwise(module: nn.Module) -> bool:
    """True for a conv whose every output channel reads exactly one input channel of its own."""
    return isinstance(module, _CONV) and module.groups == module.in_channels == module.out_channels > 1


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace `model` once on `example_input` (no gradients kept) and return Torch-Pruning's graph."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    finally:
        model.train(was_training)
    return graph


def _is_consumer(graph: tp.DependencyGraph, module: nn.Module, handler) -> bool:
    if is_depthwise(module):
        return True
    if not isinstance(module, _CONV | nn.Linear):
        return False
    return handler == graph.get_pruner_of_module(module).prune_in_channels


def find_groups(graph: tp.DependencyGraph, ignore: Sequence[nn.Module] = ()) -> list[ChannelGroup]:
    """Every prunable channel group of the traced model, in a deterministic (trace) order.

    Groups that produce the output of a layer in `ignore` are left out, so ignoring the classifier
    keeps the number of classes fixed. A group without any consumer is left out too: its channels
    reach the model output directly and cannot be measured.
    """
    names = {module: name for name, module in graph.model.named_modules()}
    groups = []
    for group in graph.get_all_groups(ignored_layers=list(ignore), root_module_types=(_CONV, nn.Linear)):
        root = group[0].dep.target.module
        members, consumers = [], []
        for item in group:
            module = item.dep.target.module
            if not isinstance(module, nn.Module) or module not in names:
                continue
            if graph.is_out_channel_pruning_fn(item.dep.handler) and names[module] not in members:
                members.append(names[module])
            if _is_consumer(graph, module, item.dep.handler):
                consumers.append(Consumer(names[module], tuple(item.idxs), tuple(item.root_idxs)))
        if consumers:
            width = graph.get_out_channels(root)
            groups.append(ChannelGroup(names[root], width, tuple(members), tuple(consumers)))
    return groups


def group_handle(graph: tp.DependencyGraph, group: ChannelGroup, remove: Sequence[int]) -> tp.dependency.Group:
    """The Torch-Pruning group that removes channels `remove` of `group` from every coupled layer."""
    root = graph.model.get_submodule(group.name)
    pruner = graph.get_pruner_of_module(root)
    return graph.get_pruning_group(root, pruner.prune_out_channels, list(remove))
