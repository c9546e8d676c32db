"""Channel removal over the dependency graph, and the optimizer-state remap that goes with it.

Torch-Pruning replaces each pruned parameter by a new, smaller `nn.Parameter`. To know which element
of the old tensor each new element came from, whatever layer type did the slicing, every parameter
is first overwritten by its own element indices (float64, exact up to 2**53); after surgery those
indices are read back and used to gather the original weights and every optimizer state tensor of
the same shape (SGD momentum, Adam's moments). The optimizer object is edited in place, so learning
rate schedulers holding it keep working.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch_pruning as tp
from torch import nn

from .groups import ChannelGroup, group_handle


def channels_to_remove(densities: torch.Tensor, keep: int) -> list[int]:
    """Indices of the `len(densities) - keep` least dense channels (ties: the higher index goes)."""
    order = sorted(range(len(densities)), key=lambda c: (-float(densities[c]), c))
    return sorted(order[keep:])


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


def _reinitialise(model: nn.Module) -> None:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()


def prune_groups(
    model: nn.Module,
    graph: tp.DependencyGraph,
    groups: list[ChannelGroup],
    remove: Mapping[str, list[int]],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    reinit: bool = False,
) -> None:
    """Physically remove channels `remove[group name]` from every layer coupled to each group.

    Kept channels keep their weights and their optimizer state, sliced to match; with `reinit`
    every layer is re-initialised and the optimizer state is dropped instead (fresh weights, fresh
    moments). The model and the optimizer are changed in place; `graph` stays valid for `model`.
    """
    old_params = dict(model.named_parameters())
    old_names = {id(p): name for name, p in old_params.items()}
    requires_grad = {name: p.requires_grad for name, p in old_params.items()}
    originals = _tag_parameters(model)
    try:
        for group in groups:
            channels = remove.get(group.name, [])
            if channels:
                group_handle(graph, group, channels).prune(record_history=False)
    finally:
        kept = _restore_parameters(model, originals, requires_grad)
    if reinit:
        _reinitialise(model)
    if optimizer is not None:
        _remap_optimizer(optimizer, old_names, dict(model.named_parameters()), kept, reinit)
