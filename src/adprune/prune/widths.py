"""Width policies: how wide every group becomes at a prune. One object each.

A width policy is any object with `widths(plan: PlanInput) -> {group name: width}`; a group it
leaves out keeps its width. `ADPruner(widths=...)` takes such an object or `"density"`
(`DensityPlan()`):

- `DensityPlan(min_channels, round_to)`: ADP's plan, `ceil(density * width)` per group;
- `WidthSchedule({epoch: {group: width}})`: given widths after given epochs (it also sets when to
  prune: the pruner's trigger becomes those epochs);
- `ParameterTarget(params, min_channels)`: one global ranking of every channel by its importance
  score, cut where the model has about `params` parameters (Network Slimming's rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import AdpruneError
from .groups import ChannelGroup
from .options import check_option, method_default
from .selection import whole_blocks
from .targets import fit_widths, parameters_at, ranked_widths


@dataclass(frozen=True)
class PlanInput:
    """What a width policy may read at a prune: the epoch, the prunable groups, each group's mean
    density (absent where no training forward reached it), each channel's importance score, the
    model with an example input, and the groups left alone with why."""

    epoch: int
    groups: Sequence[ChannelGroup]
    densities: Mapping[str, float]
    scores: Mapping[str, torch.Tensor]
    model: nn.Module
    example_input: torch.Tensor
    skipped: Mapping[str, str]

    @property
    def widths(self) -> dict[str, int]:
        """The current width of every prunable group."""
        return {g.name: g.width for g in self.groups}


@runtime_checkable
class WidthPolicy(Protocol):
    """The interface `ADPruner` calls at a prune (see the module docstring)."""

    def widths(self, plan: PlanInput) -> dict[str, int]: ...


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
    densities: Mapping[str, float], widths: Mapping[str, int], *, min_channels: int = 1, round_to: int = 1
) -> dict[str, int]:
    """`plan_width` for every group in `widths`; a group without a density keeps its width."""
    return {
        name: plan_width(densities.get(name, math.nan), width, min_channels=min_channels, round_to=round_to)
        for name, width in widths.items()
    }


class DensityPlan:
    """ADP's plan: every group at `ceil(density * width)` channels, at least `min_channels`, rounded
    up to `round_to` and then to whole blocks of its grouped layers; a group without a density
    keeps its width."""

    def __init__(
        self, min_channels: int = method_default("min_channels"), round_to: int = method_default("round_to")
    ) -> None:
        check_option("min_channels", min_channels)
        check_option("round_to", round_to)
        self.min_channels = min_channels
        self.round_to = round_to

    def widths(self, plan: PlanInput) -> dict[str, int]:
        """The planned width of every group."""
        planned = plan_widths(
            plan.densities, plan.widths, min_channels=self.min_channels, round_to=self.round_to
        )
        return whole_blocks(planned, plan.groups)


class WidthSchedule:
    """Given widths after given epochs: `{epoch: {group name: width}}`; a group the schedule does
    not name at an epoch keeps its width, groups left alone (`skipped`) are ignored."""

    def __init__(self, schedule: Mapping[int, Mapping[str, int]]) -> None:
        if not isinstance(schedule, Mapping) or not all(isinstance(w, Mapping) for w in schedule.values()):
            raise AdpruneError(
                f"schedule={schedule!r:.60} is not valid: give {{epoch: {{group name: width}}}}"
            )
        self.schedule = {int(epoch): dict(widths) for epoch, widths in schedule.items()}

    @property
    def epochs(self) -> list[int]:
        """The epochs after which the schedule prunes."""
        return sorted(self.schedule)

    def check(self, groups: Sequence[ChannelGroup], skipped: Mapping[str, str]) -> None:
        """Raise AdpruneError now for a name or width that can never work on these groups."""
        widths = {g.name: g.width for g in groups}
        for epoch, asked in self.schedule.items():
            self._at(asked, widths, skipped, epoch)

    def widths(self, plan: PlanInput) -> dict[str, int]:
        """The widths the schedule gives at `plan.epoch` (the current widths at any other epoch)."""
        asked = self.schedule.get(plan.epoch, {})
        return self._at(asked, plan.widths, plan.skipped, plan.epoch)

    @staticmethod
    def _at(
        asked: Mapping[str, int], widths: Mapping[str, int], skipped: Mapping[str, str], epoch: int
    ) -> dict[str, int]:
        planned = dict(widths)
        for name, width in asked.items():
            if name in skipped:
                continue
            if name not in planned or not (isinstance(width, int) and 1 <= width <= planned[name]):
                raise AdpruneError(
                    f"the width schedule asks for {width} channels in '{name}' at epoch {epoch}, but the "
                    f"group {'does not exist' if name not in planned else f'has {planned[name]}'}: give "
                    "widths of existing groups, at most their current width"
                )
            planned[name] = width
        return planned


class ParameterTarget:
    """About `params` parameters: the channels ranked by their importance scores over all groups
    together, the best kept, at least `min_channels` per group and whole blocks of grouped layers
    (`targets.fit_widths` searches the share to keep)."""

    def __init__(self, params: int, min_channels: int = method_default("min_channels")) -> None:
        check_option("target_params", params)
        check_option("min_channels", min_channels)
        self.params = params
        self.min_channels = min_channels

    def widths(self, plan: PlanInput) -> dict[str, int]:
        """The widths whose parameter count is closest to the target."""
        blocks = {g.name: g.blocks for g in plan.groups}
        return fit_widths(
            self.params,
            lambda keep: ranked_widths(plan.scores, keep, min_channels=self.min_channels, blocks=blocks),
            lambda widths: parameters_at(plan.model, plan.example_input, widths),
        )


def resolve_widths(widths: str | WidthPolicy) -> WidthPolicy:
    """The width policy `widths` names: `DensityPlan()` for "density", or the object itself."""
    if widths == "density":
        return DensityPlan()
    if isinstance(widths, WidthPolicy) and not isinstance(widths, str):
        return widths
    raise AdpruneError(
        f"widths={widths!r:.60} is not valid: give 'density' or a width policy such as "
        "DensityPlan(min_channels=4, round_to=8), WidthSchedule({epoch: {group: width}}) or "
        "ParameterTarget(n)"
    )
