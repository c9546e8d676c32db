"""Checks of `ADPruner`'s keyword options, run before anything is built (the Lightning callback runs
them at its own construction): each bad value gets one `AdpruneError` that says how to fix it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from ..errors import AdpruneError
from .choices import IMPORTANCES, MODES, TRIGGERS


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _at_least(low: int) -> Callable[[Any], bool]:
    return lambda value: _whole(value) and value >= low


def _within(low: float, high: float, *, open_low: bool = False) -> Callable[[Any], bool]:
    return lambda value: _number(value) and (low < value if open_low else low <= value) and value <= high


def _epochs(value: Any) -> bool:
    return (
        isinstance(value, Iterable)
        and not isinstance(value, (str, bytes))
        and all(_whole(e) and e >= 0 for e in value)
    )


def _layers(value: Any) -> bool:
    return (
        isinstance(value, Iterable)
        and not isinstance(value, (str, bytes))
        and all(isinstance(m, (str, nn.Module)) for m in value)
    )


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


# option -> (check, what a valid value is)
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "prune_at": (_optional(_epochs), "None or a list of epochs (whole numbers >= 0), e.g. prune_at=[10, 20]"),
    "trigger": (lambda v: v in TRIGGERS, f"one of {', '.join(TRIGGERS)}"),
    "tol": (_optional(_within(0, 1, open_low=True)), "None (the trigger's default) or a number in (0, 1]"),
    "patience": (_at_least(1), "a whole number of epochs >= 1"),
    "min_channels": (_at_least(1), "a whole number >= 1"),
    "round_to": (_at_least(1), "a whole number >= 1, e.g. 8"),
    "mode": (lambda v: v in MODES, f"one of {', '.join(MODES)}"),
    "ignore": (_layers, "a list of module names or modules, e.g. ignore=['classifier']"),
    "max_prunes": (_at_least(0), "a whole number >= 0"),
    "min_reduction": (_within(0, 1), "a share of the parameters in [0, 1], e.g. 0.05"),
    "check": (lambda v: isinstance(v, bool), "True or False"),
    "importance": (lambda v: v in IMPORTANCES, f"one of {', '.join(IMPORTANCES)}"),
    "schedule": (_optional(lambda v: isinstance(v, Mapping)), "None or {epoch: {group name: width}}"),
    "target_params": (_optional(_at_least(1)), "None or a whole number of parameters >= 1"),
    "fade": (_within(0, 1), "a share of an epoch in [0, 1], e.g. 0.5 (0: cut at once)"),
    "init": (_optional(callable), "None or a function that re-initialises a model in place"),
    "density_every": (_at_least(1), "a whole number >= 1: count densities on every k-th training step"),
}


def check_options(options: Mapping[str, Any]) -> None:
    """Raise AdpruneError for the first option whose value cannot work, naming it, the value and what
    to give instead. Options this module does not know (such as `process_group`) are not checked."""
    for name, value in options.items():
        rule = _RULES.get(name)
        if rule is not None and not rule[0](value):
            raise AdpruneError(f"{name}={value!r:.60} is not valid: give {rule[1]}")
    if options.get("schedule") is not None and options.get("target_params") is not None:
        raise AdpruneError("give a width schedule or a target parameter count, not both")


NO_OPTIMIZER = (
    "ADPruner has no optimizer: a prune replaces the pruned layers' parameters, so an optimizer built "
    "before it would go on updating tensors the model no longer uses. Pass optimizer=your_optimizer "
    "(it is remapped in place), or build a new optimizer after every prune"
)


def submodule(model: nn.Module, name: str) -> nn.Module:
    """`model`'s submodule `name` for the `ignore` option; AdpruneError when there is none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise AdpruneError(f"ignore names '{name}', which is not a module of the model") from None
