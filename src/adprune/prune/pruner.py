"""ADPruner: activation-density pruning that any training loop drives once per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import AdpruneError
from .choices import IMPORTANCES, MODES
from .cost import count_parameters, inference_macs, training_flops_per_sample
from .density import DensityMonitor
from .groups import find_groups
from .importance import weight_scores
from .plan import ConvergenceTrigger, parameter_reduction, plan_widths
from .surgery import channels_to_remove, prune_groups
from .targets import fit_widths, parameters_at, ranked_widths
from .tp_compat import build_graph
from .trial import find_unprunable


@dataclass
class PruneEvent:
    """One prune: when, the widths before and after, the parameters before and after, its seconds."""

    epoch: int
    widths_before: dict[str, int]
    widths_after: dict[str, int]
    params_before: int
    params_after: int
    seconds: float


@dataclass
class EpochCost:
    """The ledger line of one epoch, for the model as it trained during that epoch.

    `params_after` is the parameter count once the epoch closed: lower than `params` after a prune.
    """

    epoch: int
    params: int
    macs: int
    train_flops: int
    train_flops_total: int
    samples: int
    params_after: int
    prune_s: float = 0.0
    pruned: bool = False


class ADPruner:
    """Prunes `model` in training from the activation density of its channel groups.

    Call `epoch_end(epoch)` after each training epoch: it reads the densities the monitor counted
    during the epoch's training forwards, decides whether to prune (at the epochs in `prune_at`,
    or, when `prune_at` is None, when the densities converged: moved less than `tol` over
    `patience` epochs), and if so shrinks every group to `ceil(density * width)` channels (at least
    `min_channels`, rounded up to `round_to`). `mode="inherit"` keeps the densest channels and their
    weights and optimizer state; `mode="reinit"` re-initialises the new widths. Pruning stops after
    `max_prunes` prunes, or after a prune that removed less than `min_reduction` of the parameters.
    Layers named in `ignore` (module names or modules) keep their output width; the classifier and
    the input channels are never pruned.

    The same machinery runs the peer methods the benchmark compares ADP with. `importance` ranks
    which channels go: `density` (ADP), `l1` (the L1 norm of each filter) or `bn_scale` (the
    BatchNorm scale; groups without one fall back to density). `schedule` ({epoch: {group: width}})
    replaces the plan by given widths at given epochs (pruning ends after its last epoch).
    `target_params` replaces the plan by a global ranking of all channels by `importance`, cut where
    the model has the parameter count closest to the target (Network Slimming's global threshold).

    Channel groups that cannot be pruned safely are left alone and listed in `skipped` (group name
    -> reason): groups that reach attention or a recurrent layer, or pass through a reshape
    Torch-Pruning cannot map (a channel shuffle), and, with `check=True`, groups whose removal fails
    or breaks the model in a trial prune of a deep copy at construction (one forward and backward of
    `example_input`; costs about one copy and one trace of the model). Channels read by grouped
    convolutions are removed at the same positions in every conv group, so those widths are planned
    in multiples of the number of conv groups.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        prune_at: Iterable[int] | None = None,
        tol: float = 0.02,
        patience: int = 2,
        min_channels: int = 4,
        round_to: int = 1,
        mode: str = "inherit",
        ignore: Iterable[str | nn.Module] = (),
        max_prunes: int = 3,
        min_reduction: float = 0.05,
        check: bool = True,
        importance: str = "density",
        schedule: Mapping[int, Mapping[str, int]] | None = None,
        target_params: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise AdpruneError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if importance not in IMPORTANCES:
            raise AdpruneError(f"importance must be one of {', '.join(IMPORTANCES)}, got {importance!r}")
        if target_params is not None and schedule is not None:
            raise AdpruneError("give a width schedule or a target parameter count, not both")
        if min_channels < 1 or round_to < 1 or max_prunes < 0:
            raise AdpruneError("min_channels and round_to must be >= 1 and max_prunes >= 0")
        self.model = model
        self.example_input = example_input
        self.optimizer = optimizer
        self.prune_at = None if prune_at is None else sorted(set(prune_at))
        self.min_channels = min_channels
        self.round_to = round_to
        self.mode = mode
        self.max_prunes = max_prunes
        self.min_reduction = min_reduction
        self.trigger = ConvergenceTrigger(tol=tol, patience=patience)
        self.ignore = [model.get_submodule(m) if isinstance(m, str) else m for m in ignore]
        self.check = check
        self.importance = importance
        self.schedule = None if schedule is None else {int(e): dict(w) for e, w in schedule.items()}
        self.target_params = target_params
        self.skipped: dict[str, str] = {}
        self.events: list[PruneEvent] = []
        self.ledger: list[EpochCost] = []
        self.finished = max_prunes == 0
        self.densities: dict[str, float] = {}
        self.channel_densities: dict[str, torch.Tensor] = {}
        self._flops_per_sample: int | None = None
        self._macs: int | None = None
        self._attach()
        for epoch in self.schedule or {}:
            self._scheduled_widths(epoch)  # fail now on names or widths that can never work

    def _attach(self) -> None:
        self.graph = build_graph(self.model, self.example_input)
        groups = self._find_groups()
        if self.check:
            names = {module: name for name, module in self.model.named_modules()}
            ignore = [names[m] for m in self.ignore if m in names]
            self.skipped.update(find_unprunable(self.model, self.example_input, groups, ignore))
            groups = [g for g in groups if g.name not in self.skipped]
        self.groups = groups
        self.monitor = DensityMonitor(self.model, self.groups)

    def _find_groups(self):
        """The prunable groups of the traced model; records every skipped group in `skipped`."""
        groups = []
        for group in find_groups(self.graph, self.ignore):
            if group.skip_reason is not None and group.name not in self.skipped:
                self.skipped[group.name] = group.skip_reason
            if group.name not in self.skipped:
                groups.append(group)
        return groups

    @property
    def widths(self) -> dict[str, int]:
        """Current width of every prunable group, by group name (skipped groups are not listed)."""
        return {g.name: g.width for g in self.groups}

    def _model_costs(self) -> tuple[int, int]:
        if self._macs is None:
            self._macs = inference_macs(self.model, self.example_input)
            self._flops_per_sample = training_flops_per_sample(self.model, self.example_input)
        return self._macs, self._flops_per_sample

    def _due(self, epoch: int, converged: bool) -> bool:
        if self.finished:
            return False
        if self.schedule is not None:
            return epoch in self.schedule
        if self.prune_at is not None:
            return epoch in self.prune_at
        return converged

    def epoch_end(self, epoch: int, *, last: bool = False) -> tuple[nn.Module, torch.optim.Optimizer | None]:
        """Close the epoch: read densities, prune if due, append to the ledger, start a new window.

        Pass `last=True` for the final epoch of the budget: a network pruned then would never be
        trained again, so no prune happens. Returns the model and the optimizer, both changed in
        place when a prune happened.
        """
        self.channel_densities = self.monitor.read()
        if not self.channel_densities:
            raise AdpruneError(
                "no training forward pass was counted since the last epoch_end: call it after "
                "training an epoch with model.train()"
            )
        self.densities = {name: float(d.mean()) for name, d in self.channel_densities.items()}
        converged = self.trigger.update(self.densities)
        macs, flops_per_sample = self._model_costs()
        samples = self.monitor.samples_seen
        params = count_parameters(self.model)
        total = (self.ledger[-1].train_flops_total if self.ledger else 0) + flops_per_sample * samples
        line = EpochCost(epoch, params, macs, flops_per_sample * samples, total, samples, params_after=params)
        if not last and self._due(epoch, converged):
            started = time.perf_counter()
            event = self.prune(epoch)
            line.prune_s = time.perf_counter() - started
            if event is not None:
                line.pruned = True
                line.params_after = event.params_after
        self.ledger.append(line)
        self.monitor.reset()
        return self.model, self.optimizer

    def planned_widths(self) -> dict[str, int]:
        """The widths the latest densities ask for (the current width where no density was read).

        Groups read by grouped convolutions get a multiple of their number of conv groups.
        """
        planned = plan_widths(
            self.densities, self.widths, min_channels=self.min_channels, round_to=self.round_to
        )
        for group in self.groups:
            if group.blocks > 1:
                planned[group.name] = min(
                    group.width, math.ceil(planned[group.name] / group.blocks) * group.blocks
                )
        return planned

    def prune(
        self, epoch: int, channel_densities: Mapping[str, torch.Tensor] | None = None
    ) -> PruneEvent | None:
        """Prune now, from `channel_densities` (group name -> one density per channel) or, when None,
        from the densities the last `epoch_end` read. `epoch_end` calls this when a prune is due.

        Groups absent from `channel_densities` keep their width. The model and the optimizer are
        changed in place, the monitor restarts its window, and the event is recorded in `events`.
        Returns None when the plan keeps every width (pruning then stops: `finished` is set).
        An explicit call prunes even after `finished` or `max_prunes`.
        """
        if channel_densities is not None:
            self._set_densities(channel_densities)
        elif not self.channel_densities:
            raise AdpruneError(
                "no densities to prune from: train an epoch and call epoch_end first, "
                "or pass channel_densities={group name: per-channel densities}"
            )
        started = time.perf_counter()
        event = self._prune(epoch)
        if event is not None:
            event.seconds = time.perf_counter() - started
        return event

    def _set_densities(self, channel_densities: Mapping[str, torch.Tensor]) -> None:
        widths, given = self.widths, {}
        for name, values in channel_densities.items():
            if name in self.skipped:
                continue
            if name not in widths:
                raise AdpruneError(
                    f"channel_densities names '{name}', which is not a channel group; "
                    f"groups are {', '.join(widths) or 'none'} (see ADPruner.widths)"
                )
            values = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
            if values.numel() != widths[name]:
                raise AdpruneError(
                    f"channel_densities['{name}'] has {values.numel()} values but the group has "
                    f"{widths[name]} channels: give one density per channel"
                )
            given[name] = values
        self.channel_densities = given
        self.densities = {name: float(d.mean()) for name, d in given.items()}

    def _scores(self) -> dict[str, torch.Tensor]:
        """Per-channel importance of every group under `importance` (density where a score is missing)."""
        scores = {}
        for group in self.groups:
            by_weight = self.importance != "density"
            score = weight_scores(self.graph, group, self.importance) if by_weight else None
            scores[group.name] = score if score is not None else self.channel_densities[group.name]
        return scores

    def _scheduled_widths(self, epoch: int) -> dict[str, int]:
        widths = self.widths
        for name, width in self.schedule[epoch].items():
            if name in self.skipped:
                continue
            if name not in widths or not 1 <= width <= widths[name]:
                raise AdpruneError(
                    f"the width schedule asks for {width} channels in '{name}' at epoch {epoch}, but the "
                    f"group {'does not exist' if name not in widths else f'has {widths[name]}'}: give "
                    "widths of existing groups, at most their current width"
                )
            widths[name] = width
        return widths

    def _target_widths(self, scores: Mapping[str, torch.Tensor]) -> dict[str, int]:
        blocks = {g.name: g.blocks for g in self.groups}
        return fit_widths(
            self.target_params,
            lambda keep: ranked_widths(scores, keep, min_channels=self.min_channels, blocks=blocks),
            lambda widths: parameters_at(self.model, self.example_input, widths),
        )

    def _prune(self, epoch: int) -> PruneEvent | None:
        before, scores = self.widths, self._scores()
        if self.schedule is not None and epoch in self.schedule:
            planned = self._scheduled_widths(epoch)
        elif self.target_params is not None:
            planned = self._target_widths(scores)
        else:
            planned = self.planned_widths()
        if planned == before:
            self.finished = True
            return None
        blocks = {g.name: g.blocks for g in self.groups}
        remove = {
            name: channels_to_remove(scores[name], planned[name], blocks[name])
            for name in before
            if planned[name] < before[name]
        }
        params_before = count_parameters(self.model)
        self.monitor.detach()
        prune_groups(
            self.model, self.graph, self.groups, remove, self.optimizer, reinit=self.mode == "reinit"
        )
        self.groups = self._find_groups()
        self.monitor = DensityMonitor(self.model, self.groups)
        self.trigger.reset()
        self._macs = self._flops_per_sample = None
        event = PruneEvent(epoch, before, self.widths, params_before, count_parameters(self.model), 0.0)
        self.events.append(event)
        reduction = parameter_reduction(event.params_before, event.params_after)
        if self.schedule is not None:
            self.finished = epoch >= max(self.schedule)
        elif len(self.events) >= self.max_prunes or reduction < self.min_reduction:
            self.finished = True
        return event
