"""Channel groups: the sets of output channels that must keep one width, found by Torch-Pruning.

A group is named after its root layer. Besides its width it records its *probes*: the tensors on
which its activation density is counted, with the map from each tensor's channel indices to the
group's channel indices.

One rule decides where: **a group's density is the share of non-zero activations that the next
layers read from it, counted after the activation and before any pooling** (see `readers`).

- A plain chain (one conv or linear layer, optionally one normalisation layer after it) is probed at
  the chain's output: counting positives there equals counting non-zeros after the activation that
  follows, before any pooling blurs them (a max-pool makes activations look denser, a global mean
  makes every channel look fully active).
- Any other group (channels summed by residual connections, concatenated, passed through
  depthwise convs) is probed at the input of every conv or linear layer that reads it through an
  activation, whatever reused modules, functional calls and additions lie between: that input is
  the residual stream itself, after its activation. A tensor that several layers read (a stage's
  first conv and its shortcut conv) is counted once. Readers that see the channels only after
  pooling them (a ResNet stage behind its stem's max-pool, the classifier behind global pooling)
  are not counted; a group with no other reader is left alone.
- A group that some reader reads with no activation in between (MobileNetV2's linear bottleneck)
  is left alone: that reader uses every value, zero or not, so density cannot say which channels
  are idle.

Besides its probes a group records its *readers*: every tensor through which the next layers see
its channels (the chain's output, or the input of every consumer), which is where `fade` scales
channels down before they are removed.

A conv reads its channels along dim 1, a linear layer along its last dim (channels-last tensors, as
in ConvNeXt's blocks and transformers' MLPs); each probe records which.

Some groups cannot be pruned safely; they are still returned, with `skip_reason` saying why:
channels that reach attention (`nn.MultiheadAttention`: heads and q/k/v widths are tied together)
or a recurrent layer, that pass through a reshape whose channel mapping Torch-Pruning cannot work
out (the channel shuffle of ShuffleNet), or that Torch-Pruning cannot follow at all. Channels read
by grouped convolutions or group norms (`blocks > 1`) can only be removed at the same positions in
every block, so that every conv group keeps the same width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch_pruning as tp
from torch import nn

from .blocks import BlockConstraint, block_constraint, channel_layout, is_depthwise
from .readers import Reading, reading
from .tp_compat import SearchTimeout

_CONV = nn.modules.conv._ConvNd
_NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)

_UNSAFE = {
    nn.MultiheadAttention: "its channels reach attention ({name}): heads and q/k/v widths are left alone",
    nn.RNNBase: "its channels reach a recurrent layer ({name}), which is left alone",
}
_OPAQUE_REASON = (
    "its channels pass through {what}, which mixes channels in a way Torch-Pruning cannot map "
    "(such as a channel shuffle)"
)


@dataclass(frozen=True)
class Probe:
    """A tensor to count: the input (or output) of a module; its channel `tensor_idxs[k]` is group channel
    `channel_idxs[k]`. Channels lie along `channel_dim` (1 for convs, -1 for linear layers)."""

    module_name: str
    reads_output: bool
    tensor_idxs: tuple[int, ...]
    channel_idxs: tuple[int, ...]
    channel_dim: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    """A set of coupled output channels: its layers and the tensors its density is counted on.

    The channels form `blocks` equal consecutive blocks (grouped convs or group norms read them block
    by block): a prune must remove the same positions from every block. When such a layer covers
    only part of the group (see `blocks.py`), `units` lists the channels that must go together and
    `tied` the channel sets of which some must stay. `skip_reason` is None for a group that can be
    pruned, else why it is left alone.
    """

    name: str
    width: int
    members: tuple[str, ...]
    probes: tuple[Probe, ...]
    blocks: int = 1
    skip_reason: str | None = None
    readers: tuple[Probe, ...] = ()
    units: tuple[tuple[int, ...], ...] = ()
    tied: tuple[frozenset[int], ...] = ()


def _is_consumer(graph: tp.DependencyGraph, module: nn.Module, handler) -> bool:
    if is_depthwise(module):
        return True
    if not isinstance(module, _CONV | nn.Linear):
        return False
    return handler == graph.get_pruner_of_module(module).prune_in_channels


def _channel_dim(module: nn.Module) -> int:
    return -1 if isinstance(module, nn.Linear) else 1


def _chain_output(model: nn.Module, members: list[str]) -> tuple[str, int] | None:
    """The last member of a plain conv/linear (+ one norm) chain and its channel dim, or None for any
    other group."""
    layers = [n for n in members if isinstance(model.get_submodule(n), _CONV | nn.Linear)]
    norms = [n for n in members if isinstance(model.get_submodule(n), _NORM)]
    if len(layers) != 1 or len(norms) > 1 or len(layers) + len(norms) != len(members):
        return None
    layer = model.get_submodule(layers[0])
    if is_depthwise(layer):
        return None
    return (norms[0] if norms else layers[0]), _channel_dim(layer)


def _density_probes(
    graph: tp.DependencyGraph, members: list[str], consumers: list[Probe], readers: list[Probe], chain: bool
) -> tuple[list[Probe], str | None]:
    """Where a group's density is counted, by the rule of the module docstring, and why the group is
    left alone when it is (else None). A chain's only reader is its output, counted before any pooling.
    """
    model = graph.model
    member_modules = [model.get_submodule(n) for n in members]
    readings = {
        p.module_name: reading(graph, model.get_submodule(p.module_name), member_modules) for p in consumers
    }
    linear = [name for name, kind in readings.items() if kind is Reading.LINEAR]
    if linear:
        return readers, (
            f"{linear[0]} reads its channels with no activation after them (a linear bottleneck): every "
            "value is used, so activation density cannot say which channels are idle"
        )
    active = _distinct_tensors(
        graph, [p for p in consumers if readings[p.module_name] is Reading.ACTIVATIONS]
    )
    if chain or active:
        return (readers if chain else active), None
    return readers, (
        "the next layers read its channels only after pooling their activations, so no tensor shows how "
        "many of them are non-zero"
    )


def _distinct_tensors(graph: tp.DependencyGraph, probes: list[Probe]) -> list[Probe]:
    """`probes` without those that read a tensor an earlier probe reads already (a stage's first conv
    and its shortcut conv read one tensor): every tensor is counted once, however many layers read it."""
    seen, distinct = set(), []
    for probe in probes:
        node = graph.module2node[graph.model.get_submodule(probe.module_name)]
        key = (tuple(id(i) for i in node.inputs), probe.tensor_idxs, probe.channel_idxs, probe.channel_dim)
        if key not in seen:
            seen.add(key)
            distinct.append(probe)
    return distinct


def _unsafe_reason(graph: tp.DependencyGraph, group, names: dict) -> str | None:
    opaque = getattr(graph, "opaque_nodes", {})
    for item in group:
        module = item.dep.target.module
        for kind, reason in _UNSAFE.items():
            if isinstance(module, kind):
                return reason.format(name=names.get(module, type(module).__name__))
        if item.dep.target in opaque:
            return _OPAQUE_REASON.format(what=opaque[item.dep.target])
    return None


def find_groups(graph: tp.DependencyGraph, ignore: Sequence[nn.Module] = ()) -> list[ChannelGroup]:
    """Every prunable channel group of the traced model, in the order the model registers their roots.

    Groups that produce the output of a layer in `ignore` are left out, so ignoring the classifier
    keeps the number of classes fixed. A group without any consumer layer is left out too: its
    channels reach the model output directly. Groups that cannot be pruned safely are returned with
    their `skip_reason` set.
    """
    names = {module: name for name, module in graph.model.named_modules()}
    groups = []
    for group in graph.get_all_groups(ignored_layers=list(ignore), root_module_types=(_CONV, nn.Linear)):
        root = group[0].dep.target.module
        members, consumers, constraints, split_reason = [], [], [], None
        for item in group:
            module = item.dep.target.module
            constraint = block_constraint(graph, item)
            if isinstance(constraint, BlockConstraint):
                constraints.append(constraint)
            elif constraint is not None:
                split_reason = split_reason or constraint
            if not isinstance(module, nn.Module) or module not in names:
                continue
            if graph.is_out_channel_pruning_fn(item.dep.handler) and names[module] not in members:
                members.append(names[module])
            if _is_consumer(graph, module, item.dep.handler):
                consumers.append(
                    Probe(names[module], False, tuple(item.idxs), tuple(item.root_idxs), _channel_dim(module))
                )
        if not consumers:
            continue
        width = graph.get_out_channels(root)
        chain_end = _chain_output(graph.model, members)
        readers = consumers
        if chain_end is not None:
            readers = [Probe(chain_end[0], True, tuple(range(width)), tuple(range(width)), chain_end[1])]
        probes, reason = _density_probes(graph, members, consumers, readers, chain_end is not None)
        reason = _unsafe_reason(graph, group, names) or split_reason or reason
        blocks, units = channel_layout(width, constraints)
        if reason is None and width % blocks:
            reason = (
                f"its {width} channels do not split into the {blocks} groups its grouped convs/norms read"
            )
        if reason is None and blocks > 1 and width == blocks:
            reason = (
                f"a grouped conv or norm reads its {width} channels one per group (such as a separable "
                "conv with a depth multiplier): removing one would remove a whole group of that layer"
            )
        tied = tuple(frozenset(c.channels) for c in constraints) if units else ()
        groups.append(
            ChannelGroup(
                names[root], width, tuple(members), tuple(probes), blocks, reason, tuple(readers), units, tied
            )
        )
    found = {member for group in groups for member in group.members}
    for root, exc in getattr(graph, "failed_roots", {}).items():
        if root in names and names[root] not in found:
            reason = (
                f"{exc}, so it is left alone"
                if isinstance(exc, SearchTimeout)
                else f"Torch-Pruning cannot follow its channels ({type(exc).__name__}: {exc})"
            )
            groups.append(
                ChannelGroup(names[root], graph.get_out_channels(root), (names[root],), (), 1, reason)
            )
    order = {name: i for i, name in enumerate(names.values())}
    return sorted(groups, key=lambda g: order[g.name])


def group_handle(
    graph: tp.DependencyGraph, group: ChannelGroup, remove: Sequence[int]
) -> tp.dependency.Group:
    """The Torch-Pruning group that removes channels `remove` of `group` from every coupled layer."""
    root = graph.model.get_submodule(group.name)
    pruner = graph.get_pruner_of_module(root)
    return graph.get_pruning_group(root, pruner.prune_out_channels, list(remove))


def prune_group(graph: tp.DependencyGraph, group: ChannelGroup, remove: Sequence[int]) -> None:
    """Remove channels `remove` of `group` from every coupled layer, in place."""
    group_handle(graph, group, remove).prune(record_history=False)
