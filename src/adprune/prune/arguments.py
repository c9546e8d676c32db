"""What `ADPruner` accepts: its keyword options checked, and its policies resolved from shortcuts.

Run at construction by `ADPruner` and by the Lightning callback (which checks before it has a
model), so a value that cannot work is refused in one line before anything is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from ..errors import AdpruneError
from .importance import Importance, resolve_importance
from .options import check_option, method_default
from .triggers import FixedEpochs, Trigger, resolve_trigger
from .widths import WidthPolicy, WidthSchedule, resolve_widths

_SCALARS = ("max_prunes", "min_reduction", "fade", "bn_recalibrate", "mode", "density_every")


def resolve_pruner_options(options: Mapping[str, Any]) -> tuple[Trigger, WidthPolicy, Importance]:
    """The trigger, width policy and importance `ADPruner`'s keyword `options` ask for, once every
    option has been checked: AdpruneError for the first that cannot work, naming it and what to give
    (the method's numbers and names from `options.METHOD_OPTIONS`, the three policies, `init`,
    `check`). The Lightning callback runs this at its own construction."""
    for name in _SCALARS:
        if name in options:
            check_option(name, options[name])
    widths = resolve_widths(options.get("widths", "density"))
    trigger = trigger_for(options.get("trigger"), widths)
    importance = resolve_importance(options.get("importance", "density"))
    init = options.get("init")
    if init is not None and not callable(init):
        raise AdpruneError(f"init={init!r:.60} is not valid: give a function that re-initialises a model")
    for name, low in (("epochs", 1), ("first_epoch", 0)):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise AdpruneError(f"{name}={value!r:.60} is not valid: give a whole number of at least {low}")
    if not isinstance(options.get("check", True), bool):
        raise AdpruneError(f"check={options['check']!r:.60} is not valid: give True or False")
    return trigger, widths, importance


def trigger_for(trigger: str | Iterable[int] | Trigger | None, widths: WidthPolicy) -> Trigger:
    """The trigger of `trigger` (None: the default, or a width schedule's own epochs)."""
    if isinstance(widths, WidthSchedule):
        if trigger is not None:
            raise AdpruneError(
                "a WidthSchedule prunes after its own epochs: leave trigger out (it becomes those epochs)"
            )
        return FixedEpochs(widths.epochs)
    return resolve_trigger(method_default("trigger") if trigger is None else trigger)


_BAD_IGNORE = (
    "ignore={value!r:.60} is not valid: give a list of module names or modules, e.g. ignore=['classifier']"
)


def ignored_modules(model: nn.Module, ignore: Iterable[str | nn.Module]) -> list[nn.Module]:
    """The modules `ignore` names (names or modules); AdpruneError for anything else."""
    if isinstance(ignore, (str, bytes)) or not isinstance(ignore, Iterable):
        raise AdpruneError(_BAD_IGNORE.format(value=ignore))
    modules = []
    for item in ignore:
        if isinstance(item, nn.Module):
            modules.append(item)
        elif isinstance(item, str):
            try:
                modules.append(model.get_submodule(item))
            except AttributeError:
                raise AdpruneError(f"ignore names '{item}', which is not a module of the model") from None
        else:
            raise AdpruneError(_BAD_IGNORE.format(value=list(ignore)))
    return modules


def not_counted(groups: Iterable[str]) -> str:
    """The warning of a cut that keeps the widths of groups no training forward reached."""
    return (
        f"no training forward reached channel group(s) {', '.join(groups)}: they keep their width "
        "(their density is unknown); train them, or ignore them to silence this"
    )


def nothing_to_prune(model: nn.Module, skipped: Mapping[str, str]) -> str:
    """The construction warning of a model with no prunable channel group."""
    why = (
        "; ".join(f"{name}: {reason}" for name, reason in skipped.items()) or "it has no channel group at all"
    )
    return (
        f"ADPruner found no channel group it can prune in {type(model).__name__}, so it will not shrink "
        f"it (it still keeps the ledger). Left alone: {why}"
    )
