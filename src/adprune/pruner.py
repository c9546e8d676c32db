"""ADPruner: activation-density pruning that any training loop drives once per epoch."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .cost import count_parameters, inference_macs, training_flops_per_sample
from .density import DensityMonitor
from .errors import AdpruneError
from .groups import build_graph, find_groups
from .plan import ConvergenceTrigger, parameter_reduction, plan_widths
from .surgery import channels_to_remove, prune_groups

MODES = ("inherit", "reinit")


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
    ) -> None:
        if mode not in MODES:
            raise AdpruneError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
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
        self.events: list[PruneEvent] = []
        self.ledger: list[EpochCost] = []
        self.finished = max_prunes == 0
        self.densities: dict[str, float] = {}
        self.channel_densities: dict[str, torch.Tensor] = {}
        self._flops_per_sample: int | None = None
        self._macs: int | None = None
        self._attach()

    def _attach(self) -> None:
        self.graph = build_graph(self.model, self.example_input)
        self.groups = find_groups(self.graph, self.ignore)
        self.monitor = DensityMonitor(self.model, self.groups)

    @property
    def widths(self) -> dict[str, int]:
        """Current width of every prunable group, by group name."""
        return {g.name: g.width for g in self.groups}

    def _model_costs(self) -> tuple[int, int]:
        if self._macs is None:
            self._macs = inference_macs(self.model, self.example_input)
            self._flops_per_sample = training_flops_per_sample(self.model, self.example_input)
        return self._macs, self._flops_per_sample

    def _due(self, epoch: int, converged: bool) -> bool:
        if self.finished:
            return False
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
            event = self._prune(epoch)
            line.prune_s = time.perf_counter() - started
            if event is not None:
                event.seconds = line.prune_s
                line.pruned = True
                line.params_after = event.params_after
        self.ledger.append(line)
        self.monitor.reset()
        return self.model, self.optimizer

    def planned_widths(self) -> dict[str, int]:
        """The widths the latest densities ask for (the current width where no density was read)."""
        return plan_widths(
            self.densities, self.widths, min_channels=self.min_channels, round_to=self.round_to
        )

    def _prune(self, epoch: int) -> PruneEvent | None:
        before, planned = self.widths, self.planned_widths()
        if planned == before:
            self.finished = True
            return None
        remove = {
            name: channels_to_remove(self.channel_densities[name], planned[name])
            for name in before
            if planned[name] < before[name]
        }
        params_before = count_parameters(self.model)
        self.monitor.detach()
        prune_groups(
            self.model, self.graph, self.groups, remove, self.optimizer, reinit=self.mode == "reinit"
        )
        self.groups = find_groups(self.graph, self.ignore)
        self.monitor = DensityMonitor(self.model, self.groups)
        self.trigger.reset()
        self._macs = self._flops_per_sample = None
        event = PruneEvent(epoch, before, self.widths, params_before, count_parameters(self.model), 0.0)
        self.events.append(event)
        reduction = parameter_reduction(event.params_before, event.params_after)
        if len(self.events) >= self.max_prunes or reduction < self.min_reduction:
            self.finished = True
        return event
