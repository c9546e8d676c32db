"""Width plans and the prune triggers: pure functions of densities and channel choices, no torch."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Set


def plan_width(density: float, width: int, *, min_channels: int = 1, round_to: int = 1) -> int:
    """The width a group of `width` channels with activation density `density` should keep.

    `ceil(density * width)`, rounded up to a multiple of `round_to`, then clamped to
    `[min(min_channels, width), width]`. A NaN density (a diverged layer) keeps the full width, so a
    broken measurement never deletes a layer.
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    if min_channels < 1 or round_to < 1:
        raise ValueError("min_channels and round_to must be at least 1")
    if math.isnan(density):
        return width
    density = min(max(density, 0.0), 1.0)
    wanted = math.ceil(density * width - 1e-9)
    wanted = math.ceil(wanted / round_to) * round_to
    return max(min(min_channels, width), min(wanted, width))


def plan_widths(
    densities: Mapping[str, float],
    widths: Mapping[str, int],
    *,
    min_channels: int = 1,
    round_to: int = 1,
) -> dict[str, int]:
    """`plan_width` for every group in `widths`; a group without a density keeps its width."""
    return {
        name: plan_width(densities.get(name, math.nan), width, min_channels=min_channels, round_to=round_to)
        for name, width in widths.items()
    }


class ConvergenceTrigger:
    """Fires when every group's activation density moved less than `tol` over `patience` epochs.

    Feed it one mapping of group densities per epoch with `update`; it answers whether the window
    of the last `patience + 1` epochs spans less than `tol` for every group. `reset` empties the
    window (after a prune the widths, and so the densities, are new).
    """

    def __init__(self, tol: float = 0.02, patience: int = 2) -> None:
        if tol <= 0 or patience < 1:
            raise ValueError(f"tol must be > 0 and patience >= 1, got tol={tol}, patience={patience}")
        self.tol = tol
        self.patience = patience
        self.window: deque[dict[str, float]] = deque(maxlen=patience + 1)

    def update(self, densities: Mapping[str, float]) -> bool:
        """Record one epoch's densities; True when the densities have converged."""
        self.window.append(dict(densities))
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

    def state_dict(self) -> dict:
        """JSON-ready state: the window, oldest first."""
        return {"tol": self.tol, "patience": self.patience, "window": list(self.window)}

    def load_state_dict(self, state: Mapping) -> None:
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
    applied to the density plan.

    Feed it, once per epoch, the channels the plan would remove now ({group: indices}) and the
    widths. The distance between consecutive epochs is `removal_change`; the trigger fires when the
    last `patience` distances are all below `tol`. Right after initialisation every channel's
    density is noise around the layer's mean, so the choice flips from epoch to epoch; it settles
    once training has given the channels their roles. `reset` forgets everything (after a prune the
    channels are new).
    """

    def __init__(self, tol: float = 0.2, patience: int = 2) -> None:
        if not 0 < tol <= 1 or patience < 1:
            raise ValueError(f"tol must be in (0, 1] and patience >= 1, got tol={tol}, patience={patience}")
        self.tol = tol
        self.patience = patience
        self.previous: dict[str, list[int]] | None = None
        self.distances: deque[float] = deque(maxlen=patience)

    @property
    def last_change(self) -> float | None:
        """The latest distance, or None before two epochs were seen."""
        return self.distances[-1] if self.distances else None

    def update(self, removal: Mapping[str, Set[int]], widths: Mapping[str, int]) -> bool:
        """Record one epoch's removal plan; True when it has been stable for `patience` epochs."""
        current = {name: sorted(channels) for name, channels in removal.items()}
        if self.previous is not None:
            self.distances.append(removal_change(self.previous, current, widths))
        self.previous = current
        return len(self.distances) == self.patience and all(d < self.tol for d in self.distances)

    def reset(self) -> None:
        """Forget the previous plan and the distances."""
        self.previous = None
        self.distances.clear()

    def state_dict(self) -> dict:
        """JSON-ready state: the previous plan and the recent distances."""
        return {"tol": self.tol, "patience": self.patience, "previous": self.previous,
                "distances": list(self.distances)}  # fmt: skip

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what `state_dict` returned."""
        previous = state["previous"]
        self.previous = None if previous is None else {k: list(v) for k, v in previous.items()}
        self.distances = deque(state["distances"], maxlen=self.patience)


def parameter_reduction(params_before: int, params_after: int) -> float:
    """The share of parameters a prune removed, in [0, 1]."""
    return 0.0 if params_before <= 0 else max(0.0, (params_before - params_after) / params_before)
