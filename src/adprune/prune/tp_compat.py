"""Torch-Pruning's dependency graph, patched where Torch-Pruning 1.6 (pinned) fails on current PyTorch.

Every workaround we need on Torch-Pruning lives here, each with its reason in `_Graph`'s docstring;
the rest of `adprune.prune` builds graphs only through `build_graph`.
"""

from __future__ import annotations

import math
import time

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import _helpers
from torch_pruning.dependency import index_mapping
from torch_pruning.dependency.dependency import Dependency

from .modes import eval_mode, every_parameter_traced, plain_forward

_CONV = nn.modules.conv._ConvNd
SEARCH_SECONDS = 60.0
"""How long listing a model's channel groups may take in all; roots not searched by then are left alone."""
ROOT_SEARCH_SECONDS = 10.0
"""How long the search for the channels coupled to one root layer may take."""
_MAPPINGS = {
    tp.ops.OPTYPE.CONCAT: index_mapping.update_concat_index_mapping,
    tp.ops.OPTYPE.SPLIT: index_mapping.update_split_index_mapping,
    tp.ops.OPTYPE.RESHAPE: index_mapping.update_reshape_index_mapping,
    tp.ops.OPTYPE.UNBIND: index_mapping.update_unbind_index_mapping,
    tp.ops.OPTYPE.EXPAND: index_mapping.update_expand_index_mapping,
    tp.ops.OPTYPE.SLICE: index_mapping.update_slice_index_mapping,
}


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
      instead of ending the listing of all groups; so is one whose search runs past
      `ROOT_SEARCH_SECONDS` (Torch-Pruning revisits a layer once per distinct set of indices that
      reaches it, which never ends on models that slice and re-join channels many times, such as
      ReXNet and DPN), and every root left when the listing has run `SEARCH_SECONDS`.
    - Torch-Pruning refreshes every index mapping of the graph for each group it builds, which
      makes listing the groups of a DenseNet quadratic; here the refresh only runs when a parameter
      changed its shape (a prune) since the last one.
    - Torch-Pruning grows a group by propagating a set of indices again whenever it differs from
      every set that reached a layer before, then merges the items pairwise: on models that slice
      and re-join channels (ReXNet, DPN) both explode (minutes, or no end). Index mappings act on
      each index alone, so here each index is propagated once per layer and pruning function, which
      gives the same group (one item per layer and function, each index once, with the first root
      index that reached it, as Torch-Pruning's merge keeps).
    """

    def build_dependency(self, model, example_inputs, **kwargs):
        self.opaque_nodes: dict = {}
        self.failed_roots: dict = {}
        self._mapped_shapes = None
        self._search_end = math.inf
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
        """Torch-Pruning's group of the layers coupled to `idxs` of `module` under `pruning_fn`, grown
        with each index propagated once per layer (see the class docstring)."""
        if module not in self.module2node:
            raise ValueError(f"Module {module} is not in the dependency graph.")
        shapes = self._shapes()
        if shapes != self._mapped_shapes:
            index_mapping.update_index_mapping(self)
            self._mapped_shapes = shapes
        if isinstance(module, tp.ops.TORCH_CONV) and module.groups == module.out_channels > 1:
            pruning_fn = tp.pruner.function.prune_depthwise_conv_out_channels
        root = self.module2node[module]
        start = [_helpers._HybridIndex(idx=i, root_idx=i) for i in idxs]
        reached = {(root, pruning_fn): (Dependency(pruning_fn, pruning_fn, root, root), start, set(start))}
        pending = [(next(iter(reached.values()))[0], start)]
        while pending:
            if time.monotonic() > self._search_end:
                raise SearchTimeout(
                    f"Torch-Pruning's search for the layers coupled to it ran past {ROOT_SEARCH_SECONDS:g} s"
                )
            dep, indices = pending.pop()
            for next_dep in dep.target.dependencies:
                if not next_dep.is_triggered_by(dep.handler):
                    continue
                mapped = indices
                for mapping in next_dep.index_mapping:
                    if mapping is not None:
                        mapped = mapping(mapped)
                key = (next_dep.target, next_dep.handler)
                seen = reached.setdefault(key, (next_dep, [], set()))
                fresh = [i for i in dict.fromkeys(mapped) if i not in seen[2]]
                if fresh:
                    seen[1].extend(fresh)
                    seen[2].update(fresh)
                    pending.append((next_dep, fresh))
        group = tp.dependency.Group()
        ignored = {id(p) for p in self.ignored_params}
        for dep, indices, _ in reached.values():
            target = dep.target.module
            if not indices or (isinstance(target, nn.Parameter) and id(target) in ignored):
                continue
            first = {}  # one item per index, with the first root index that reached it
            for index in indices:
                first.setdefault(index.idx, index)
            first = list(first.values())
            item = _helpers.GroupItem(dep=dep, idxs=[i.idx for i in first])
            item.root_idxs = [i.root_idx for i in first]
            group.add_dep(item.dep, item.idxs)
            group.items[-1] = item
        group._DG = self
        return group

    def get_all_groups(self, ignored_layers=(), root_module_types=(_CONV, nn.Linear)):
        """Torch-Pruning's `get_all_groups`, recording a root whose group fails in `failed_roots`."""
        ignored = set(ignored_layers) | set(self.IGNORED_LAYERS_IN_TRACING)
        visited = set()
        self.failed_roots = {}
        end = time.monotonic() + SEARCH_SECONDS
        for module in list(self.module2node):
            if not isinstance(module, tuple(root_module_types)) or module in ignored or module in visited:
                continue
            pruner = self.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            if time.monotonic() > end:
                self.failed_roots[module] = SearchTimeout(
                    f"not searched: listing the model's channel groups ran past {SEARCH_SECONDS:g} s"
                )
                continue
            try:
                self._search_end = min(end, time.monotonic() + ROOT_SEARCH_SECONDS)
                group = self.get_pruning_group(
                    module, pruner.prune_out_channels, list(range(pruner.get_out_channels(module)))
                )
            except Exception as exc:
                self.failed_roots[module] = exc
                continue
            finally:
                self._search_end = math.inf
            prunable = True
            for dep, _ in group:
                if self.is_out_channel_pruning_fn(dep.handler):
                    visited.add(dep.target.module)
                    prunable = prunable and dep.target.module not in ignored
            if prunable:
                yield group


class SearchTimeout(Exception):
    """Torch-Pruning's search for a group ran past its time limit."""


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
    so is any other reshape that keeps the batch dim but regroups dim 1. A vector of one value per
    channel shaped to broadcast over channels (ConvNeXt's layer scale, `[C]` to `[1, C, 1, 1]`) keeps them."""
    if len(before) == 1:
        return [d for d in after if d != 1] == list(before) and len(after) > 1
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


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace `model` once on `example_input` (no gradients kept) and return Torch-Pruning's graph.

    Frozen layers, compiled submodules and reentrant activation checkpoints are traced as plain
    layers (`modes.every_parameter_traced`, `modes.plain_forward`)."""
    with eval_mode(model), torch.enable_grad(), plain_forward(), every_parameter_traced(model):
        return _Graph().build_dependency(model, example_inputs=example_input, verbose=False)
