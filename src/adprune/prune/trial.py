"""The trial prune: which channel groups break a model when they lose a channel, found on a copy."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import AdpruneError, summarize_exception
from .groups import ChannelGroup, find_groups, prune_group
from .modes import eval_mode, plain_forward
from .outputs import output_shapes, scalar_of
from .selection import smallest_removal
from .tp_compat import build_graph


def _forward_backward(model: nn.Module, example_input: torch.Tensor) -> list:
    """One eval-mode forward and backward of `example_input`; the output shapes."""
    model.eval()
    with torch.enable_grad(), plain_forward():
        output = model(example_input)
        loss = scalar_of(output)
        if loss.requires_grad:
            loss.backward()
    return output_shapes(output)


def find_unprunable(
    model: nn.Module,
    example_input: torch.Tensor,
    groups: Sequence[ChannelGroup],
    ignore: Sequence[str] = (),
    removal: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, str]:
    """Groups of `groups` whose pruning fails or breaks the model, by name, with the reason.

    The check runs on a deep copy of `model` (the model itself is untouched): every group loses
    the channels `removal` names for it (by default one channel per block, the trial at
    construction; at a prune, the channels it removes, since a model may break only when it loses
    more than one, as res2net's splits do), then the copy must run forward and backward on
    `example_input` and give outputs of the same shapes. When that fails, the groups are tried one
    at a time to find the culprits (a fresh copy after each failure). `ignore` names the layers the
    groups were found with. Groups already skipped or too narrow to lose a channel are not tried.
    """
    if removal is None:
        tried = [g for g in groups if g.skip_reason is None and g.width > g.blocks]
        removal = {g.name: smallest_removal(g) for g in tried}
    names = [g.name for g in groups if removal.get(g.name)]
    if not names:
        return {}
    with eval_mode(model), torch.no_grad(), plain_forward():
        expected = output_shapes(model(example_input))
    try:
        if _trial(model, example_input, ignore, removal, names, expected, stop_at_failure=False) is None:
            return {}
    except AdpruneError:
        raise
    except Exception:
        pass  # some group fails: find which, one at a time
    failures: dict[str, str] = {}
    pending = names
    while pending:
        failed = _trial(model, example_input, ignore, removal, pending, expected, stop_at_failure=True)
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
    removal: Mapping[str, Sequence[int]],
    names: Sequence[str],
    expected: list,
    *,
    stop_at_failure: bool,
) -> tuple[str, str] | None:
    """Prune `names` (`removal[name]` of each) on a fresh copy (checking after each group when
    `stop_at_failure`); the first group that failed and why, or None. Without `stop_at_failure` a
    failure raises."""
    try:
        trial = copy.deepcopy(model)
    except Exception as exc:
        why = summarize_exception(exc)
        raise AdpruneError(
            f"cannot deep-copy the model to check which channel groups prune safely ({why}); "
            "pass check=False to skip the check"
        ) from exc
    graph = build_graph(trial, example_input)
    found = {g.name: g for g in find_groups(graph, [trial.get_submodule(n) for n in ignore])}
    for name in names:
        try:
            group = found[name]
            prune_group(graph, group, removal[name])
            if stop_at_failure:
                shapes = _forward_backward(trial, example_input)
                if shapes != expected:
                    return name, f"pruning it changes the model's output shapes {expected} to {shapes}"
        except Exception as exc:
            if not stop_at_failure:
                raise
            return name, f"pruning it breaks the model ({summarize_exception(exc)})"
    if not stop_at_failure and _forward_backward(trial, example_input) != expected:
        raise RuntimeError("output shapes changed")
    return None
