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

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping

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
_MAPPINGS = {
    tp.ops.OPTYPE.CONCAT: index_mapping.update_concat_index_mapping,
    tp.ops.OPTYPE.SPLIT: index_mapping.update_split_index_mapping,
    tp.ops.OPTYPE.RESHAPE: index_mapping.update_reshape_index_mapping,
    tp.ops.OPTYPE.UNBIND: index_mapping.update_unbind_index_mapping,
    tp.ops.OPTYPE.EXPAND: index_mapping.update_expand_index_mapping,
    tp.ops.OPTYPE.SLICE: index_mapping.update_slice_index_mapping,
}


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
    by block): a prune must remove the same positions from every block. `skip_reason` is None for
    a group that can be pruned, else why it is left alone.
    """

    name: str
    width: int
    members: tuple[str, ...]
    probes: tuple[Probe, ...]
    blocks: int = 1
    skip_reason: str | None = None


def is_depthwise(module: nn.Module) -> bool:
    """True for a conv whose every output channel reads exactly one input channel of its own."""
    return isinstance(module, _CONV) and module.groups == module.in_channels == module.out_channels > 1


class _Graph(tp.DependencyGraph):
    """Torch-Pruning's dependency graph, made to survive ops whose channel mapping it cannot infer.

    Fixes to Torch-Pruning 1.6 (pinned) as it meets current PyTorch and some torchvision models:

    - Splits (`torch.chunk`, `torch.split` along channels) get their sizes from the autograd node,
      in the order each consumer reads them, instead of from shape inference, which fails behind a
      channel shuffle (ShuffleNet) because PyTorch renamed the saved sizes Torch-Pruning looks for.
    - A reshape that moves channels out of their dim (the view to `(N, groups, C / groups, H, W)`
      of a channel shuffle), and any node whose channel mapping raises (Torch-Pruning divides by a
      channel count it inferred as zero behind a shuffle), becomes an opaque pass-through in
      `opaque_nodes` (node -> what it is) instead of being mapped as if channel i stayed channel i,
      or of leaving no graph at all; every group that reaches one is skipped.
    - A root layer whose group cannot be followed is recorded in `failed_roots` (module -> reason)
      instead of ending the listing of all groups.
    - Torch-Pruning refreshes every index mapping of the graph for each group it builds, which
      makes listing the groups of a DenseNet quadratic; here the refresh only runs when a parameter
      changed its shape (a prune) since the last one.
    """

    def build_dependency(self, model, example_inputs, **kwargs):
        self.opaque_nodes: dict = {}
        self.failed_roots: dict = {}
        self._mapped_shapes = None
        try:
            super().build_dependency(model, example_inputs, **kwargs)
        except Exception as exc:
            if not hasattr(self, "module2node") or not _raised_in(exc, index_mapping.__file__):
                raise
        self._fix_splits()
        for node in list(self.module2node.values()):
            if node.type == tp.ops.OPTYPE.RESHAPE:
                shapes = _reshape_shapes(node.grad_fn)
                if shapes is not None and not _keeps_channels(*shapes):
                    self._make_opaque(node, f"a reshape from {list(shapes[0])} to {list(shapes[1])}")
            mapping = _MAPPINGS.get(node.type)
            if mapping is None:
                continue
            try:
                mapping(self, node)
            except Exception as exc:
                self._make_opaque(node, f"a {type(node.module).__name__} whose mapping fails ({exc!r:.80})")
        index_mapping.update_index_mapping(self)
        self._mapped_shapes = self._shapes()
        return self

    def _make_opaque(self, node, what: str) -> None:
        node.type = tp.ops.OPTYPE.ELEMENTWISE  # no channel mapping: index i stays i
        self.opaque_nodes[node] = what
        for dep in node.dependencies:
            dep.index_mapping = [None, None]
        for other in (*node.inputs, *node.outputs):
            for dep in other.dependencies:
                if dep.target is node:
                    dep.index_mapping = [None, None]

    def _fix_splits(self) -> None:
        for node in list(self.module2node.values()):
            if node.type != tp.ops.OPTYPE.SPLIT:
                continue
            fn = node.grad_fn
            sizes, dim = getattr(fn, "_saved_self_sym_sizes", None), getattr(fn, "_saved_dim", None)
            if sizes is None or dim is None or len(sizes) < 2 or dim % len(sizes) != 1:
                continue  # not a split of the channel dim: Torch-Pruning leaves it alone too
            total = int(sizes[1])
            if hasattr(fn, "_saved_split_sizes"):
                chunks = [int(c) for c in fn._saved_split_sizes]
            elif hasattr(fn, "_saved_split_size"):
                size = int(fn._saved_split_size)
                chunks = [min(size, total - i * size) for i in range(math.ceil(total / size))]
            else:
                continue
            reads = {}
            for out in node.outputs:
                used = {nr for f, nr in getattr(out.grad_fn, "next_functions", ()) if f is fn}
                reads[out] = used.pop() if len(used) == 1 else None
            order = sorted(reads.values(), key=lambda k: -1 if k is None else k)
            if None in reads.values() or order != list(range(len(order))):
                self._make_opaque(node, "a split whose chunks are read in a way Torch-Pruning cannot map")
                continue
            node.outputs.sort(key=reads.__getitem__)
            node.module.split_sizes = chunks
            node.module.offsets = [sum(chunks[:i]) for i in range(len(chunks) + 1)]

    def _shapes(self) -> tuple:
        if getattr(self, "_all_modules", None) is None:
            self._all_modules = list(self.model.modules())
        return tuple(p.shape for m in self._all_modules for p in m._parameters.values() if p is not None)

    def get_pruning_group(self, module, pruning_fn, idxs):
        shapes = self._shapes()
        if shapes != self._mapped_shapes or module not in self.module2node:
            self._mapped_shapes = shapes
            return super().get_pruning_group(module, pruning_fn, idxs)
        # Torch-Pruning refreshes the mappings of every node in `module2node` before it builds the
        # group and then only reads the root's node: show it just that node, whose refresh is a no-op.
        nodes = self.module2node
        self.module2node = {module: nodes[module]}
        try:
            return super().get_pruning_group(module, pruning_fn, idxs)
        finally:
            self.module2node = nodes

    def get_all_groups(self, ignored_layers=(), root_module_types=(_CONV, nn.Linear)):
        """Torch-Pruning's `get_all_groups`, recording a root whose group fails in `failed_roots`."""
        ignored = set(ignored_layers) | set(self.IGNORED_LAYERS_IN_TRACING)
        visited = set()
        self.failed_roots = {}
        for module in list(self.module2node):
            if not isinstance(module, tuple(root_module_types)) or module in ignored or module in visited:
                continue
            pruner = self.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            try:
                group = self.get_pruning_group(
                    module, pruner.prune_out_channels, list(range(pruner.get_out_channels(module)))
                )
            except Exception as exc:
                self.failed_roots[module] = exc
                continue
            prunable = True
            for dep, _ in group:
                if self.is_out_channel_pruning_fn(dep.handler):
                    visited.add(dep.target.module)
                    prunable = prunable and dep.target.module not in ignored
            if prunable:
                yield group


def _reshape_shapes(fn) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The input and output shapes of a view/reshape autograd node, where PyTorch records them."""
    try:
        before = tuple(int(d) for d in fn._saved_self_sym_sizes)
        after = tuple(int(d) for d in fn._input_metadata[0].shape)
    except (AttributeError, IndexError, TypeError, RuntimeError):
        return None
    return before, after


def _keeps_channels(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """Whether a reshape leaves every channel whole: it only regroups the dims after the channels,
    flattens (N, C, H, W) for a classifier or undoes that, or folds the leading dims of a
    channels-last tensor into the batch dim or back (a linear layer reading (N, H, W, C) or
    (N, L, C) as (N * H * W, C)). A channel shuffle's views split or merge the channel dim: False;
    so is any other reshape that keeps the batch dim but regroups dim 1."""
    if len(before) < 2 or len(after) < 2:
        return False
    if before[:2] == after[:2]:
        return True
    if before[0] == after[0] and sorted((len(before), len(after))) == [2, 4]:
        flat, full = (before, after) if len(before) == 2 else (after, before)
        return flat[1] == math.prod(full[1:])
    return before[-1] == after[-1] and before[0] != after[0]


def _raised_in(exc: BaseException, filename: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module of `model` in eval mode, and give each its own mode back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace `model` once on `example_input` (no gradients kept) and return Torch-Pruning's graph."""
    with eval_mode(model), torch.enable_grad():
        return _Graph().build_dependency(model, example_inputs=example_input, verbose=False)


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


def _blocks(graph: tp.DependencyGraph, module, handler) -> int:
    """How many blocks a layer splits the group's channels into (conv groups, norm groups)."""
    if not isinstance(module, nn.Module) or is_depthwise(module):
        return 1
    pruner = graph.get_pruner_of_module(module)
    if pruner is None:
        return 1
    if graph.is_out_channel_pruning_fn(handler):
        return int(pruner.get_out_channel_groups(module) or 1)
    if graph.is_in_channel_pruning_fn(handler):
        return int(pruner.get_in_channel_groups(module) or 1)
    return 1


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
        members, consumers, blocks = [], [], 1
        for item in group:
            module = item.dep.target.module
            blocks = math.lcm(blocks, _blocks(graph, module, item.dep.handler))
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
        if chain_end is not None:
            consumers = [Probe(chain_end[0], True, tuple(range(width)), tuple(range(width)), chain_end[1])]
        reason = _unsafe_reason(graph, group, names)
        if reason is None and width % blocks:
            reason = (
                f"its {width} channels do not split into the {blocks} groups its grouped convs/norms read"
            )
        groups.append(ChannelGroup(names[root], width, tuple(members), tuple(consumers), blocks, reason))
    found = {member for group in groups for member in group.members}
    for root, exc in getattr(graph, "failed_roots", {}).items():
        if root in names and names[root] not in found:
            reason = f"Torch-Pruning cannot follow its channels ({type(exc).__name__}: {exc})"
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
