"""When a prune is due: one object each, fed one `EpochSignal` per epoch. No torch.

A trigger is any object with `update(signal) -> bool` (True: prune now), `reset()` (after a prune
the channels are new), `exhausted(epoch) -> bool` (no prune can be due after `epoch`) and
`state_dict()` / `load_state_dict(state)` (JSON-ready, for checkpoints). A trigger that measures a
distance exposes it as `last_change` (the ledger's `mask_change`). `ADPruner(trigger=...)` takes
such an object, a list of epochs (`FixedEpochs`) or a built-in's name: `"ranking"`
(`RankingTrigger()`) or `"density"` (`ConvergenceTrigger()`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import AdpruneError
from .options import TRIGGERS, check_option, method_default


@dataclass(frozen=True)
class EpochSignal:
    """What a trigger may read at the end of an epoch: the epoch, every group's density and width,
    and the channels a prune would remove now (`removal()`, computed only when asked)."""

    epoch: int
    densities: Mapping[str, float]
    widths: Mapping[str, int]
    removal: Callable[[], Mapping[str, Sequence[int]]]


@runtime_checkable
class Trigger(Protocol):
    """The interface `ADPruner` drives (see the module docstring)."""

    def update(self, signal: EpochSignal) -> bool: ...
    def reset(self) -> None: ...
    def exhausted(self, epoch: int) -> bool: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class ConvergenceTrigger:
    """Fires when every group's activation density moved less than `tol` over `patience` epochs:
    the window of the last `patience + 1` epochs spans less than `tol` for every group."""

    def __init__(self, tol: float = 0.02, patience: int = method_default("patience")) -> None:
        check_option("tol", tol)
        check_option("patience", patience)
        self.tol = tol
        self.patience = patience
        self.window: deque[dict[str, float]] = deque(maxlen=patience + 1)

    def update(self, signal: EpochSignal) -> bool:
        """Record one epoch's densities; True when the densities have converged."""
        self.window.append(dict(signal.densities))
        if len(self.window) <= self.patience:
            return False
        names = set().union(*self.window)
        for name in names:
            values = [epoch.get(name, math.nan) for epoch in self.window]
            if any(math.isnan(v) for v in values) or max(values) - min(values) >= self.tol:
                return False
        return True

    def reset(self) -> None:
        """Forget the window."""
        self.window.clear()

    def exhausted(self, epoch: int) -> bool:
        """Never: densities may converge again at any epoch."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state: the window, oldest first."""
        return {"tol": self.tol, "patience": self.patience, "window": list(self.window)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a window written by `state_dict`."""
        self.window = deque((dict(e) for e in state["window"]), maxlen=self.patience + 1)


def removal_change(
    before: Mapping[str, Set[int]], after: Mapping[str, Set[int]], widths: Mapping[str, int]
) -> float:
    """The share of all channels of `widths` whose fate (removed or kept) differs between two removal
    plans ({group: channel indices to remove}); NaN without channels. A group missing from either
    plan removes nothing there."""
    total = sum(widths.values())
    if total == 0:
        return math.nan
    changed = sum(len(set(before.get(name, ())) ^ set(after.get(name, ()))) for name in widths)
    return changed / total


class RankingTrigger:
    """Fires when the channels a prune would remove stopped changing: EarlyBird's mask-distance test
    applied to the pruner's own removal (its importance, its width policy).

    The distance between consecutive epochs is `removal_change`; the trigger fires when the last
    `patience` distances are all below `tol`. Right after initialisation every channel's density is
    noise around the layer's mean, so the choice flips from epoch to epoch; it settles once training
    has given the channels their roles.
    """

    def __init__(self, tol: float = 0.2, patience: int = method_default("patience")) -> None:
        check_option("tol", tol)
        check_option("patience", patience)
        self.tol = tol
        self.patience = patience
        self.previous: dict[str, list[int]] | None = None
        self.distances: deque[float] = deque(maxlen=patience)

    @property
    def last_change(self) -> float | None:
        """The latest distance, or None before two epochs were seen."""
        return self.distances[-1] if self.distances else None

    def update(self, signal: EpochSignal) -> bool:
        """Record one epoch's removal; True when it has been stable for `patience` epochs."""
        current = {name: sorted(channels) for name, channels in signal.removal().items()}
        if self.previous is not None:
            self.distances.append(removal_change(self.previous, current, signal.widths))
        self.previous = current
        return len(self.distances) == self.patience and all(d < self.tol for d in self.distances)

    def reset(self) -> None:
        """Forget the previous removal and the distances."""
        self.previous = None
        self.distances.clear()

    def exhausted(self, epoch: int) -> bool:
        """Never: the removal may settle again at any epoch."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state: the previous removal and the recent distances."""
        return {"tol": self.tol, "patience": self.patience, "previous": self.previous,
                "distances": list(self.distances)}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        previous = state["previous"]
        self.previous = None if previous is None else {k: list(v) for k, v in previous.items()}
        self.distances = deque(state["distances"], maxlen=self.patience)


class FixedEpochs:
    """Fires after each of the given epochs (and never once they have passed)."""

    def __init__(self, epochs: Iterable[int]) -> None:
        if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Iterable):
            raise AdpruneError(f"epochs={epochs!r:.60} is not valid: give a list of epochs, e.g. [10, 20]")
        epochs = list(epochs)
        if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in epochs):
            raise AdpruneError(
                f"epochs={epochs!r:.60} is not valid: give a list of epochs (whole numbers >= 0), "
                "e.g. [10, 20]"
            )
        self.epochs = sorted(set(epochs))

    def update(self, signal: EpochSignal) -> bool:
        """True at the given epochs."""
        return signal.epoch in self.epochs

    def reset(self) -> None:
        """Nothing to forget."""

    def exhausted(self, epoch: int) -> bool:
        """True once `epoch` is the last given epoch or later."""
        return not self.epochs or epoch >= self.epochs[-1]

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state: the epochs."""
        return {"epochs": self.epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing changes with training: the epochs stay as given."""


def resolve_trigger(trigger: str | Iterable[int] | Trigger) -> Trigger:
    """The trigger `trigger` names: a built-in by name (at its defaults), `FixedEpochs` for a list
    of epochs, or the object itself. Raises AdpruneError for anything else."""
    if isinstance(trigger, str):
        if trigger not in TRIGGERS:
            raise AdpruneError(
                f"trigger={trigger!r:.60} is not valid: give one of {', '.join(TRIGGERS)}, a list of "
                "epochs or a trigger object"
            )
        return RankingTrigger() if trigger == "ranking" else ConvergenceTrigger()
    if isinstance(trigger, Trigger):
        return trigger
    return FixedEpochs(trigger)


def parameter_reduction(params_before: int, params_after: int) -> float:
    """The share of parameters a prune removed, in [0, 1]."""
    return 0.0 if params_before <= 0 else max(0.0, (params_before - params_after) / params_before)
