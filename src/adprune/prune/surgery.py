"""Channel removal over the dependency graph, and the optimizer-state remap that goes with it.

Torch-Pruning replaces each pruned parameter by a new, smaller `nn.Parameter`. To know which element
of the old tensor each new element came from, whatever layer type did the slicing, every parameter
and floating-point buffer is first overwritten by its own element indices (float64, exact up to
2**53); after surgery those indices are read back (`remap.KeptIndices`) and used to gather the
original weights and every optimizer state tensor that follows them (SGD momentum, Adam's moments,
Adafactor's factored variances), and recorded in a `Cut` that prunes twins of the model the same
way. The optimizer object is edited in place, so learning rate schedulers holding it keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..errors import AdpruneError, summarize_exception
from .groups import ChannelGroup, find_groups, prune_group
from .importance import weight_scores
from .remap import KeptIndices, check_optimizer_state, in_layout, layout_of, sliced_state
from .selection import group_removal, keep_first
from .tp_compat import build_graph


@dataclass
class Cut:
    """What one prune did to a model, enough to do the same to a copy of it (`twins`): the indices
    kept along every dim of every parameter and buffer, by name, and the non-tensor attributes of
    modules that changed (`out_channels`, `num_features`, ...), by module name."""

    kept: dict[str, KeptIndices] = field(default_factory=dict)
    attributes: dict[str, dict[str, object]] = field(default_factory=dict)


def _tensors(model: nn.Module) -> list[tuple[str, nn.Module, str, bool]]:
    """(full name, owner module, attribute, is a parameter) of every parameter and floating-point buffer
    with at least one dim: the tensors a prune can slice."""
    found = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for attr, param in module._parameters.items():
            if param is not None:
                found.append((prefix + attr, module, attr, True))
        for attr, buffer in module._buffers.items():
            if buffer is not None and buffer.is_floating_point() and buffer.dim() > 0:
                found.append((prefix + attr, module, attr, False))
    return found


def _simple_attributes(model: nn.Module) -> dict[str, dict[str, object]]:
    """The public int, tuple and list attributes of every module (`in_channels`, `normalized_shape`, ...)."""
    simple = int | tuple | list
    return {
        name: {k: v for k, v in vars(module).items() if not k.startswith("_") and isinstance(v, simple)}
        for name, module in model.named_modules()
    }


def _tag(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Overwrite every sliceable tensor with its own element indices; the original and its layout, by name."""
    originals = {}
    for name, module, attr, is_param in _tensors(model):
        tensor = getattr(module, attr)
        originals[name] = (tensor.detach().clone(), layout_of(tensor))
        index = torch.arange(tensor.numel(), dtype=torch.float64, device=tensor.device).view(tensor.shape)
        if is_param:
            tensor.grad = None
            tensor.data = index
        else:
            module._buffers[attr] = index
    return originals


def _untag(
    model: nn.Module,
    originals: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    requires_grad: Mapping[str, bool],
) -> dict[str, KeptIndices]:
    """Give every tagged tensor its original values at the indices it kept, in its original layout
    and dtype; the kept indices by name."""
    kept = {}
    for name, module, attr, is_param in _tensors(model):
        if name not in originals:
            continue
        tensor = getattr(module, attr)
        original, layout = originals[name]
        kept[name] = KeptIndices.from_flat(tensor.detach().flatten(), original.shape, tensor.shape)
        value = in_layout(original.flatten()[tensor.detach().flatten().long()].view(tensor.shape), layout)
        if is_param:
            tensor.data = value
            tensor.requires_grad_(requires_grad[name])
        else:
            module._buffers[attr] = value
    return kept


def _remap_optimizer(
    optimizer: torch.optim.Optimizer,
    old_names: Mapping[int, str],
    new_params: Mapping[str, nn.Parameter],
    kept: Mapping[str, KeptIndices],
    reset_state: bool,
) -> None:
    for param_group in optimizer.param_groups:
        for i, old in enumerate(param_group["params"]):
            name = old_names.get(id(old))
            if name is None:
                continue
            new = new_params[name]
            param_group["params"][i] = new
            state = optimizer.state.pop(old, None)
            if state is None or reset_state:
                continue
            optimizer.state[new] = sliced_state(state, kept[name], new)


def own_initialiser(model: nn.Module) -> Callable[[], None] | None:
    """The model's own weight initialisation, re-applied at its current widths: its `init_weights` or
    `_init_weights` method (the convention of adprune's models), or None."""
    for name in ("init_weights", "_init_weights"):
        method = getattr(model, name, None)
        if callable(method):
            return method
    return None


def reinitialise(model: nn.Module, init: Callable[[nn.Module], None] | None = None) -> None:
    """Fresh weights at the current widths: `init(model)` when given, else the model's own
    initialisation (`own_initialiser`), else every layer's `reset_parameters()` (PyTorch's default,
    which may differ from the constructor's). Normalisation statistics restart either way."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    if init is not None:
        init(model)
        return
    own = own_initialiser(model)
    if own is not None:
        own()
        return
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset) and not isinstance(module, nn.modules.batchnorm._BatchNorm):
            reset()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def prune_groups(
    model: nn.Module,
    graph: tp.DependencyGraph,
    groups: list[ChannelGroup],
    remove: Mapping[str, list[int]],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    reinit: bool = False,
    init: Callable[[nn.Module], None] | None = None,
) -> Cut:
    """Physically remove channels `remove[group name]` from every layer coupled to each group.

    Kept channels keep their weights and their optimizer state, sliced to match; with `reinit`
    the model is re-initialised (`reinitialise(model, init)`) and the optimizer state is dropped
    instead (fresh weights, fresh moments). The model and the optimizer are changed in place; `graph`
    stays valid for `model`. Parameters that the prune replaced keep their old weights (whoever still
    holds them sees the network as it was, not scratch data). Every parameter, buffer and optimizer
    state tensor keeps its dtype and memory layout (channels-last stays channels-last); optimizer
    state of any shape that follows its parameter is sliced with it (`remap`), and an optimizer
    with state that cannot follow is refused before the model is touched.
    Returns the `Cut`, to prune copies of the model (`twins`) the same way.
    """
    old_params = dict(model.named_parameters())
    old_names = {id(p): name for name, p in old_params.items()}
    if optimizer is not None and not reinit:
        check_optimizer_state(optimizer, old_names)
    requires_grad = {name: p.requires_grad for name, p in old_params.items()}
    attributes = _simple_attributes(model)
    originals = _tag(model)
    try:
        for group in groups:
            channels = remove.get(group.name, [])
            if channels:
                try:
                    prune_group(graph, group, channels)
                except Exception as exc:
                    why = summarize_exception(exc)
                    raise AdpruneError(
                        f"Torch-Pruning failed to prune channel group '{group.name}' ({why}); "
                        f"the model may be left partly pruned; leave the layer alone: ignore=['{group.name}']"
                    ) from exc
    finally:
        kept = _untag(model, originals, requires_grad)
        current = dict(model.named_parameters())
        for name, old in old_params.items():
            if current.get(name) is not old:  # replaced by a smaller Parameter: give it its weights back
                old.data = originals[name][0]
    if reinit:
        reinitialise(model, init)
    if optimizer is not None:
        _remap_optimizer(optimizer, old_names, current, kept, reinit)
    changed = {
        name: {k: v for k, v in now.items() if attributes.get(name, {}).get(k, v) != v}
        for name, now in _simple_attributes(model).items()
    }
    return Cut({n: k for n, k in kept.items() if k.changed()}, {n: c for n, c in changed.items() if c})


def shrink_to_widths(
    model: nn.Module,
    example_input: torch.Tensor,
    widths: Mapping[str, int],
    *,
    by: str | None = None,
) -> None:
    """Prune `model` so every channel group has the width given in `widths`.

    Without `by` the first channels of each group are kept (`selection.keep_first`): how a freshly
    built dense model takes the widths saved with its weights, which are loaded afterwards. With `by`
    (`l1` or `bn_scale`) the channels the model's own weights score highest stay
    (`importance.weight_scores`; a group without such a score keeps its first channels): how a
    trained model is pruned once to given widths. Raises AdpruneError for a width outside 1..the
    group's width or a name that is not a group of the model.
    """
    graph = build_graph(model, example_input)
    groups = find_groups(graph)
    remove = {}
    for group in groups:
        target = widths.get(group.name, group.width)
        if not 1 <= target <= group.width:
            raise AdpruneError(f"width {target} for '{group.name}' is outside 1..{group.width}")
        scores = None if by is None or target == group.width else weight_scores(graph, group, by)
        chosen = keep_first(group, target) if scores is None else group_removal(group, scores, target)
        remove[group.name] = chosen
    unknown = set(widths) - {g.name for g in groups}
    if unknown:
        raise AdpruneError(f"widths name groups the model does not have: {', '.join(sorted(unknown))}")
    prune_groups(model, graph, groups, remove)
