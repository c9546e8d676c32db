"""Torch-Pruning's dependency graph, patched where Torch-Pruning 1.6 (pinned) fails on current PyTorch.

Every workaround we need on Torch-Pruning lives here, each with its reason in `_Graph`'s docstring;
the rest of `adprune.prune` builds graphs only through `build_graph`.
"""

from __future__ import annotations

import math

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping

from .modes import eval_mode

_CONV = nn.modules.conv._ConvNd
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


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace `model` once on `example_input` (no gradients kept) and return Torch-Pruning's graph."""
    with eval_mode(model), torch.enable_grad():
        return _Graph().build_dependency(model, example_inputs=example_input, verbose=False)
