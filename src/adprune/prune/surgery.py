"""Channel removal over the dependency graph, and the optimizer-state remap that goes with it.

Torch-Pruning replaces each pruned parameter by a new, smaller `nn.Parameter`. To know which element
of the old tensor each new element came from, whatever layer type did the slicing, every parameter
is first overwritten by its own element indices (float64, exact up to 2**53); after surgery those
indices are read back and used to gather the original weights and every optimizer state tensor of
the same shape (SGD momentum, Adam's moments). The optimizer object is edited in place, so learning
rate schedulers holding it keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from ..errors import AdpruneError, summarize_exception
from .groups import ChannelGroup, find_groups, prune_group
from .selection import keep_first
from .tp_compat import build_graph


def _tag_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    originals = {}
    for name, param in model.named_parameters():
        originals[name] = param.detach().clone()
        param.grad = None
        param.data = torch.arange(param.numel(), dtype=torch.float64, device=param.device).view(param.shape)
    return originals


def _restore_parameters(
    model: nn.Module, originals: Mapping[str, torch.Tensor], requires_grad: Mapping[str, bool]
) -> dict[str, torch.Tensor]:
    kept = {}
    for name, param in model.named_parameters():
        index = param.detach().flatten().long()
        kept[name] = index
        param.data = originals[name].flatten()[index].view(param.shape)
        param.requires_grad_(requires_grad[name])
    return kept


def _remap_optimizer(
    optimizer: torch.optim.Optimizer,
    old_names: Mapping[int, str],
    new_params: Mapping[str, nn.Parameter],
    kept: Mapping[str, torch.Tensor],
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
            optimizer.state[new] = {
                key: _slice_state(value, old.shape, new, kept[name]) for key, value in state.items()
            }


def _slice_state(value, old_shape: torch.Size, new: nn.Parameter, index: torch.Tensor):
    if torch.is_tensor(value) and value.shape == old_shape and value.dim() > 0:
        return value.flatten()[index.to(value.device)].view(new.shape).clone()
    return value


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
) -> None:
    """Physically remove channels `remove[group name]` from every layer coupled to each group.

    Kept channels keep their weights and their optimizer state, sliced to match; with `reinit`
    the model is re-initialised (`reinitialise(model, init)`) and the optimizer state is dropped
    instead (fresh weights, fresh moments). The model and the optimizer are changed in place; `graph`
    stays valid for `model`. Parameters that the prune replaced keep their old weights (whoever still
    holds them sees the network as it was, not scratch data).
    """
    old_params = dict(model.named_parameters())
    old_names = {id(p): name for name, p in old_params.items()}
    requires_grad = {name: p.requires_grad for name, p in old_params.items()}
    originals = _tag_parameters(model)
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
        kept = _restore_parameters(model, originals, requires_grad)
        current = dict(model.named_parameters())
        for name, old in old_params.items():
            if current.get(name) is not old:  # replaced by a smaller Parameter: give it its weights back
                old.data = originals[name]
    if reinit:
        reinitialise(model, init)
    if optimizer is not None:
        _remap_optimizer(optimizer, old_names, dict(model.named_parameters()), kept, reinit)


def shrink_to_widths(model: nn.Module, example_input: torch.Tensor, widths: Mapping[str, int]) -> None:
    """Prune a freshly built dense `model` so every channel group has the width given in `widths`.

    The first channels of each group are kept (`selection.keep_first`): the widths fit the weights
    saved with them, which are loaded afterwards. Raises AdpruneError for a width outside 1..the
    group's width or a name that is not a group of the model.
    """
    graph = build_graph(model, example_input)
    groups = find_groups(graph)
    remove = {}
    for group in groups:
        target = widths.get(group.name, group.width)
        if not 1 <= target <= group.width:
            raise AdpruneError(f"width {target} for '{group.name}' is outside 1..{group.width}")
        remove[group.name] = keep_first(group, target)
    unknown = set(widths) - {g.name for g in groups}
    if unknown:
        raise AdpruneError(f"widths name groups the model does not have: {', '.join(sorted(unknown))}")
    prune_groups(model, graph, groups, remove)
