"""Channel groups: the sets of output channels that must keep one width, found by Torch-Pruning.

A group is named after its root layer. Besides its width it records its *probes*: the tensors on
which its activation density is counted, with the map from each tensor's channel indices to the
group's channel indices.

- A plain chain (one conv or linear layer, optionally one normalisation layer after it) is probed at
  the chain's output. Counting positives there equals counting non-zeros after the activation that
  follows, before any pooling blurs them.
- Any other group (channels summed by residual connections, concatenated, passed through
  depthwise convs) is probed at the input of every conv or linear layer that consumes it: exactly
  the tensor the next layer reads, whatever activations (reused modules, functional calls) and
  additions lie between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

_CONV = nn.modules.conv._ConvNd


_NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class Probe:
    """A tensor to count: the input (or output) of a module; its channel `tensor_idxs[k]` is group channel
    `channel_idxs[k]`."""

    module_name: str
    reads_output: bool
    tensor_idxs: tuple[int, ...]
    channel_idxs: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """A prunable set of coupled output channels: its layers and the tensors its density is counted on."""

    name: str
    width: int
    members: tuple[str, ...]
    probes: tuple[Probe, ...]


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


def _chain_output(model: nn.Module, members: list[str]) -> str | None:
    """The last member of a plain conv/linear (+ one norm) chain, or None for any other group."""
    layers = [n for n in members if isinstance(model.get_submodule(n), _CONV | nn.Linear)]
    norms = [n for n in members if isinstance(model.get_submodule(n), _NORM)]
    if len(layers) != 1 or len(norms) > 1 or len(layers) + len(norms) != len(members):
        return None
    if is_depthwise(model.get_submodule(layers[0])):
        return None
    return norms[0] if norms else layers[0]


def find_groups(graph: tp.DependencyGraph, ignore: Sequence[nn.Module] = ()) -> list[ChannelGroup]:
    """Every prunable channel group of the traced model, in the order the model registers their roots.

    Groups that produce the output of a layer in `ignore` are left out, so ignoring the classifier
    keeps the number of classes fixed. A group without any consumer layer is left out too: its
    channels reach the model output directly.
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
                consumers.append(Probe(names[module], False, tuple(item.idxs), tuple(item.root_idxs)))
        if not consumers:
            continue
        width = graph.get_out_channels(root)
        chain_end = _chain_output(graph.model, members)
        if chain_end is not None:
            consumers = [Probe(chain_end, True, tuple(range(width)), tuple(range(width)))]
        groups.append(ChannelGroup(names[root], width, tuple(members), tuple(consumers)))
    order = {name: i for i, name in enumerate(names.values())}
    return sorted(groups, key=lambda g: order[g.name])


def group_handle(
    graph: tp.DependencyGraph, group: ChannelGroup, remove: Sequence[int]
) -> tp.dependency.Group:
    """The Torch-Pruning group that removes channels `remove` of `group` from every coupled layer."""
    root = graph.model.get_submodule(group.name)
    pruner = graph.get_pruner_of_module(root)
    return graph.get_pruning_group(root, pruner.prune_out_channels, list(remove))
