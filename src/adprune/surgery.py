"""Channel removal over the dependency graph, and the optimizer-state remap that goes with it.

Torch-Pruning replaces each pruned parameter by a new, smaller `nn.Parameter`. To know which element
of the old tensor each new element came from, whatever layer type did the slicing, every parameter
is first overwritten by its own element indices (float64, exact up to 2**53); after surgery those
indices are read back and used to gather the original weights and every optimizer state tensor of
the same shape (SGD momentum, Adam's moments). The optimizer object is edited in place, so learning
rate schedulers holding it keep working.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from .errors import AdpruneError
from .groups import ChannelGroup, build_graph, eval_mode, find_groups, prune_group


def channels_to_remove(densities: torch.Tensor, keep: int, blocks: int = 1) -> list[int]:
    """Indices of the `len(densities) - keep` least dense channels (ties: the higher index goes).

    With `blocks > 1` the channels form that many equal consecutive blocks (the groups of a grouped
    conv) and `keep` must be a multiple of `blocks`: the positions whose density, averaged over the
    blocks, is lowest are removed from every block.
    """
    width = len(densities)
    if blocks > 1:
        if width % blocks or keep % blocks:
            raise ValueError(f"{width} channels in {blocks} blocks cannot keep {keep}")
        size = width // blocks
        per_position = torch.as_tensor(densities, dtype=torch.float64).reshape(blocks, size).mean(0)
        positions = channels_to_remove(per_position, keep // blocks)
        return [b * size + p for b in range(blocks) for p in positions]
    values = [float(d) for d in densities]
    order = sorted(range(width), key=lambda c: (-values[c], c))
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
                try:
                    prune_group(graph, group, channels)
                except Exception as exc:
                    raise AdpruneError(
                        f"Torch-Pruning failed to prune channel group '{group.name}' ({_summary(exc)}); "
                        f"the model may be left partly pruned; leave the layer alone: ignore=['{group.name}']"
                    ) from exc
    finally:
        kept = _restore_parameters(model, originals, requires_grad)
    if reinit:
        _reinitialise(model)
    if optimizer is not None:
        _remap_optimizer(optimizer, old_names, dict(model.named_parameters()), kept, reinit)


def _summary(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _loss(output) -> torch.Tensor:
    if torch.is_tensor(output):
        return (
            output.float().sum() if output.is_floating_point() else output.new_zeros((), dtype=torch.float32)
        )
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, Sequence) and not isinstance(output, str):
        return sum((_loss(o) for o in output), torch.zeros(()))
    return torch.zeros(())


def _shapes(output) -> list:
    if torch.is_tensor(output):
        return [tuple(output.shape)]
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, Sequence) and not isinstance(output, str):
        return [s for o in output for s in _shapes(o)]
    return []


def _forward_backward(model: nn.Module, example_input: torch.Tensor) -> list:
    """One eval-mode forward and backward of `example_input`; the output shapes."""
    model.eval()
    with torch.enable_grad():
        output = model(example_input)
        loss = _loss(output)
        if loss.requires_grad:
            loss.backward()
    return _shapes(output)


def _trial_removal(group: ChannelGroup) -> list[int]:
    """The last position of every block: the smallest removal the group allows."""
    size = group.width // group.blocks
    return [b * size + size - 1 for b in range(group.blocks)]


def find_unprunable(
    model: nn.Module,
    example_input: torch.Tensor,
    groups: Sequence[ChannelGroup],
    ignore: Sequence[str] = (),
) -> dict[str, str]:
    """Groups of `groups` whose pruning fails or breaks the model, by name, with the reason.

    The check runs on a deep copy of `model` (the model itself is untouched): every group loses one
    channel per block, then the copy must run forward and backward on `example_input` and give
    outputs of the same shapes. When that fails, the groups are tried one at a time to find the
    culprits (a fresh copy after each failure). `ignore` names the layers the groups were found
    with. Groups already skipped or too narrow to lose a channel are not tried.
    """
    names = [g.name for g in groups if g.skip_reason is None and g.width > g.blocks]
    if not names:
        return {}
    with eval_mode(model), torch.no_grad():
        expected = _shapes(model(example_input))
    try:
        if _trial(model, example_input, ignore, names, expected, stop_at_failure=False) is None:
            return {}
    except AdpruneError:
        raise
    except Exception:
        pass  # some group fails: find which, one at a time
    failures: dict[str, str] = {}
    pending = names
    while pending:
        failed = _trial(model, example_input, ignore, pending, expected, stop_at_failure=True)
        if failed is None:
            break
        name, reason = failed
        failures[name] = reason
        pending = pending[pending.index(name) + 1 :]
    return failures


def _trial(
    model: nn.Module,
    example_input: torch.Tensor,
    ignore: Sequence[str],
    names: Sequence[str],
    expected: list,
    *,
    stop_at_failure: bool,
) -> tuple[str, str] | None:
    """Prune `names` on a fresh copy (checking after each group when `stop_at_failure`); the first
    group that failed and why, or None. Without `stop_at_failure` a failure raises."""
    try:
        trial = copy.deepcopy(model)
    except Exception as exc:
        raise AdpruneError(
            f"cannot deep-copy the model to check which channel groups prune safely ({_summary(exc)}); "
            "pass check=False to skip the check"
        ) from exc
    graph = build_graph(trial, example_input)
    found = {g.name: g for g in find_groups(graph, [trial.get_submodule(n) for n in ignore])}
    for name in names:
        try:
            group = found[name]
            prune_group(graph, group, _trial_removal(group))
            if stop_at_failure:
                shapes = _forward_backward(trial, example_input)
                if shapes != expected:
                    return name, f"pruning it changes the model's output shapes {expected} to {shapes}"
        except Exception as exc:
            if not stop_at_failure:
                raise
            return name, f"pruning it breaks the model ({_summary(exc)})"
    if not stop_at_failure and _forward_backward(trial, example_input) != expected:
        raise RuntimeError("output shapes changed")
    return None
