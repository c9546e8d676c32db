"""Twins: modules that mirror the pruned model (an EMA or SWA copy, a teacher, a compiled wrapper) and
are pruned in step with it, with the same indices.

A twin is any module that holds, as itself or as one of its submodules, a model with the same
parameter and buffer names and shapes as the pruned one: `torch.optim.swa_utils.AveragedModel`
and timm's `ModelEmaV3` hold it as `.module`, a `torch.compile` wrapper as `._orig_mod`. At every
cut the mirror's tensors are sliced with the indices the model kept (`surgery.Cut`), so the
averaged weights of the kept channels survive, and the same module attributes change
(`out_channels`, `num_features`, ...). A mirror that is the model itself (a compiled wrapper of it)
needs nothing.
"""

from __future__ import annotations

from torch import nn

from ..errors import AdpruneError
from .surgery import Cut


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    tensors = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers())
    return {name: tuple(t.shape) for name, t in tensors}


def mirror_of(twin: nn.Module, model: nn.Module) -> nn.Module:
    """The module in `twin` (itself or its first submodule in registration order) whose parameters and
    buffers have the names and shapes of `model`'s. Raises AdpruneError when there is none."""
    if not isinstance(twin, nn.Module):
        raise AdpruneError(f"a twin must be a torch.nn.Module (an EMA copy, ...), got {type(twin).__name__}")
    wanted = _shapes(model)
    for _, candidate in twin.named_modules():
        if candidate is model or _shapes(candidate) == wanted:
            return candidate
    raise AdpruneError(
        f"twin {type(twin).__name__} holds no copy of the model (no submodule has the model's parameter "
        "names and shapes): give a copy made at the model's current widths, e.g. AveragedModel(model) or "
        "ModelEmaV3(model)"
    )


def check_in_step(mirror: nn.Module, model: nn.Module) -> None:
    """Raise AdpruneError when `mirror` no longer has `model`'s shapes (it was replaced or edited)."""
    if mirror is not model and _shapes(mirror) != _shapes(model):
        raise AdpruneError(
            f"twin {type(mirror).__name__} no longer mirrors the model (its shapes differ): register the "
            "copy you keep updating with ADPruner.add_twin"
        )


def prune_twin(mirror: nn.Module, cut: Cut) -> None:
    """Slice `mirror`'s parameters and buffers as `cut` sliced the model's (dtype, device, memory layout
    and `requires_grad` kept) and copy the module attributes that changed."""
    for name, kept in cut.kept.items():
        module_name, _, attr = name.rpartition(".")
        module = mirror.get_submodule(module_name)
        if attr in module._parameters:
            old = module._parameters[attr]
            module._parameters[attr] = nn.Parameter(kept.slice(old.detach()), requires_grad=old.requires_grad)
        elif module._buffers.get(attr) is not None:
            module._buffers[attr] = kept.slice(module._buffers[attr])
    for module_name, changes in cut.attributes.items():
        module = mirror.get_submodule(module_name)
        for attr, value in changes.items():
            setattr(module, attr, value)
