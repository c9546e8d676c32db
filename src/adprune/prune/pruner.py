"""ADPruner: activation-density pruning that any training loop drives once per epoch."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import AdpruneError
from .choice import given_densities, removal, scheduled_widths, whole_blocks
from .cost import count_parameters, inference_macs, training_flops_per_sample
from .density import DensityMonitor
from .events import EpochCost, PendingPrune, PruneEvent
from .fade import ChannelFade
from .groups import find_groups
from .importance import firing_entropy, weight_scores
from .modes import entry_module
from .options import NO_OPTIMIZER, check_options, submodule
from .plan import ConvergenceTrigger, RankingTrigger, parameter_reduction, plan_widths
from .surgery import prune_groups
from .targets import fit_widths, parameters_at, ranked_widths
from .tp_compat import build_graph
from .trial import find_unprunable


class ADPruner:
    """Prunes `model` in training from the activation density of its channel groups.

    Call `epoch_end(epoch)` after each training epoch: it reads the densities counted during the
    epoch's training forwards, decides whether to prune (at the epochs in `prune_at`, else when the
    `trigger` fires) and plans every group at `ceil(density * width)` channels (at least
    `min_channels`, rounded up to `round_to`). `trigger="ranking"` fires when the share of channels
    whose fate under the plan changed since the epoch before stayed below `tol` (default 0.2) for
    `patience` epochs; `"density"` when every group's density moved less than `tol` (default 0.02).
    A prune fades its channels out over `fade` of the next epoch (default 1; 0 cuts at once) and
    removes them at that epoch's end, when removing them changes nothing. `mode="inherit"` keeps the
    densest channels with their weights and optimizer state; `"reinit"` re-initialises the new widths
    with `init(model)`, by default the model's own `init_weights`/`_init_weights`. Pruning stops
    after `max_prunes` prunes or one that removed less than `min_reduction` of the parameters.
    `ignore` (names or modules) keeps layers' widths; the classifier and the inputs are never pruned.

    Peer methods run on the same machinery: `importance` ranks which channels go (`density`, `l1`
    filter norms, `bn_scale`), `schedule` ({epoch: {group: width}}) replaces the plan by given widths,
    and `target_params` by one global ranking cut at that parameter count (Network Slimming).

    Densities are summed over the ranks of `process_group` (default group when None);
    `density_every=k` counts them on every k-th training forward only (an estimate: see
    `density.DensityMonitor`). Without an `optimizer` a warning says to pass one. Every option is
    checked at construction (`options.check_options`).

    Groups that cannot be pruned safely are listed in `skipped` with the reason: channels reaching
    attention or a recurrent layer, a reshape Torch-Pruning cannot map (a channel shuffle), channels
    read with no activation in between, and with `check=True` groups whose removal fails or breaks a
    trial prune of a deep copy (one forward and backward of `example_input`). Grouped convolutions
    lose the same positions in every conv group.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        prune_at: Iterable[int] | None = None,
        trigger: str = "ranking",
        tol: float | None = None,
        patience: int = 1,
        min_channels: int = 4,
        round_to: int = 1,
        mode: str = "inherit",
        ignore: Iterable[str | nn.Module] = (),
        max_prunes: int = 2,
        min_reduction: float = 0.05,
        check: bool = True,
        importance: str = "density",
        schedule: Mapping[int, Mapping[str, int]] | None = None,
        target_params: int | None = None,
        fade: float = 1.0,
        init: Callable[[nn.Module], None] | None = None,
        process_group: Any = None,
        density_every: int = 1,
    ) -> None:
        options = {
            k: v for k, v in locals().items() if k not in ("self", "model", "example_input", "optimizer")
        }
        check_options(options)
        if not isinstance(model, nn.Module):
            raise AdpruneError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not torch.is_tensor(example_input):
            raise AdpruneError(
                f"example_input must be one batch of inputs as a tensor, got {type(example_input).__name__}"
            )
        if optimizer is None:
            warnings.warn(NO_OPTIMIZER, stacklevel=2)
        self.model = model
        self.example_input = example_input
        self.optimizer = optimizer
        self.prune_at = None if prune_at is None else sorted(set(prune_at))
        self.min_channels = min_channels
        self.round_to = round_to
        self.mode = mode
        self.max_prunes = max_prunes
        self.min_reduction = min_reduction
        self.trigger_kind = trigger
        own_tol = {} if tol is None else {"tol": tol}
        self.trigger = ConvergenceTrigger(patience=patience, **(own_tol if trigger == "density" else {}))
        self.ranking = RankingTrigger(patience=patience, **(own_tol if trigger == "ranking" else {}))
        self.ignore = [submodule(model, m) if isinstance(m, str) else m for m in ignore]
        self.check = check
        self.importance = importance
        self.schedule = None if schedule is None else {int(e): dict(w) for e, w in schedule.items()}
        self.target_params = target_params
        self.fade = fade
        self.init = init
        self.process_group = process_group
        self.density_every = density_every
        self.pending: PendingPrune | None = None
        self._fade: ChannelFade | None = None
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
        self.entry = entry_module(self.model, self.example_input)
        groups = self._find_groups()
        if self.check:
            names = {module: name for name, module in self.model.named_modules()}
            ignore = [names[m] for m in self.ignore if m in names]
            self.skipped.update(find_unprunable(self.model, self.example_input, groups, ignore))
            groups = [g for g in groups if g.name not in self.skipped]
        self.groups = groups
        self.monitor = self._new_monitor()

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state that the next epochs depend on: triggers, events, ledger, whether pruning
        finished, the latest densities and a prune in progress. The model and the optimizer are saved
        apart; restore this into a pruner built over the model at the same widths."""
        return {
            "trigger": self.trigger.state_dict(), "ranking": self.ranking.state_dict(),
            "events": [dataclasses.asdict(e) for e in self.events],
            "ledger": [dataclasses.asdict(line) for line in self.ledger], "finished": self.finished,
            "densities": self.densities,
            "pending": None if self.pending is None else dataclasses.asdict(self.pending),
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (a prune in progress resumes fading its channels out)."""
        self.trigger.load_state_dict(state["trigger"])
        if "ranking" in state:
            self.ranking.load_state_dict(state["ranking"])
        self.events = [PruneEvent(**e) for e in state["events"]]
        self.ledger = [EpochCost(**line) for line in state["ledger"]]
        self.finished = bool(state["finished"])
        self.densities = dict(state["densities"])
        if state.get("pending") is not None:
            self.restore_pending(PendingPrune(**state["pending"]))

    def _new_monitor(self) -> DensityMonitor:
        return DensityMonitor(
            self.model,
            self.groups,
            entry=self.entry,
            process_group=self.process_group,
            every=self.density_every,
        )

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

    def model_costs(self) -> tuple[int, int]:
        """Inference MACs per sample and training FLOPs per sample of the model as it is now (measured
        once per width: cached until the next prune)."""
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

        With `fade > 0` a prune that is due is only decided here: its channels fade out during the
        next epoch (see `fade.ChannelFade`) and are removed at that epoch's end. Pass `last=True` for
        the final epoch of the budget: a network pruned then would never be trained again, so no
        prune is decided (one whose channels have already faded out is completed). Returns the model
        and the optimizer, both changed in place when a prune happened.
        """
        local_samples = self.monitor.samples_seen  # this process's; read() sums them over the ranks
        self.channel_densities = self.monitor.read()
        if not self.channel_densities:
            raise AdpruneError(
                "no training forward pass was counted since the last epoch_end: call it after "
                "training an epoch with model.train()"
            )
        self.densities = {name: float(d.mean()) for name, d in self.channel_densities.items()}
        settled = self.trigger.update(self.densities)
        stable = self.ranking.update(self._density_removal(), self.widths)
        converged = stable if self.trigger_kind == "ranking" else settled
        macs, flops_per_sample = self.model_costs()
        samples = self.monitor.samples_seen
        params = count_parameters(self.model)
        total = (self.ledger[-1].train_flops_total if self.ledger else 0) + flops_per_sample * samples
        line = EpochCost(epoch, params, macs, flops_per_sample * samples, total, samples, params_after=params)
        line.mask_change = self.ranking.last_change
        started = time.perf_counter()
        event = None
        if self.pending is not None:
            event = self._finish_fade(epoch)
            event.seconds = time.perf_counter() - started
        elif not last and self._due(epoch, converged):
            if self.fade > 0:
                line.decided = self._start_fade(epoch, local_samples)
            else:
                event = self.prune(epoch)
        if event is not None or line.decided:
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
        return whole_blocks(planned, self.groups)

    def _density_removal(self) -> dict[str, set[int]]:
        """The channels the density plan would remove now, per group."""
        counted = [g for g in self.groups if g.name in self.channel_densities]
        chosen = removal(self.channel_densities, self.planned_widths(), counted)
        return {name: set(channels) for name, channels in chosen.items()}

    def prune(
        self, epoch: int, channel_densities: Mapping[str, torch.Tensor] | None = None
    ) -> PruneEvent | None:
        """Prune now, from `channel_densities` (group name -> one density per channel) or, when None,
        from the densities the last `epoch_end` read. `epoch_end` calls this when a prune is due.

        Groups absent from `channel_densities` keep their width. The model and the optimizer are
        changed in place, the monitor restarts its window, and the event is recorded in `events`.
        Returns None when the plan keeps every width (pruning then stops: `finished` is set).
        An explicit call prunes even after `finished` or `max_prunes`, without fading.
        """
        if self.pending is not None:
            raise AdpruneError(
                f"the prune decided after epoch {self.pending.decided} is still fading out its channels: "
                "call epoch_end to complete it before pruning again"
            )
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
        self.channel_densities = given_densities(channel_densities, self.widths, self.skipped)
        self.densities = {name: float(d.mean()) for name, d in self.channel_densities.items()}

    def _scores(self) -> dict[str, torch.Tensor]:
        """Per-channel importance of every group under `importance` (density where a score is missing)."""
        scores = {}
        for group in self.groups:
            density = self.channel_densities[group.name]
            if self.importance == "entropy":
                score = firing_entropy(density)
            elif self.importance == "density":
                score = None
            else:
                score = weight_scores(self.graph, group, self.importance)
            scores[group.name] = score if score is not None else density
        return scores

    def _scheduled_widths(self, epoch: int) -> dict[str, int]:
        return scheduled_widths(self.schedule[epoch], self.widths, self.skipped, epoch)

    def _target_widths(self, scores: Mapping[str, torch.Tensor]) -> dict[str, int]:
        blocks = {g.name: g.blocks for g in self.groups}
        return fit_widths(
            self.target_params,
            lambda keep: ranked_widths(scores, keep, min_channels=self.min_channels, blocks=blocks),
            lambda widths: parameters_at(self.model, self.example_input, widths),
        )

    def _removal(self, epoch: int) -> dict[str, list[int]] | None:
        """The channels a prune at `epoch` removes per group; None (and `finished`) when the plan keeps
        every width."""
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
        return removal(scores, planned, self.groups)

    def _prune(self, epoch: int) -> PruneEvent | None:
        remove = self._removal(epoch)
        return None if remove is None else self._cut(epoch, remove, decided=None)

    def _start_fade(self, epoch: int, local_samples: int) -> bool:
        """Decide the prune of `epoch` and start fading its channels out; False when nothing goes."""
        remove = self._removal(epoch)
        if remove is None:
            return False
        self.restore_pending(PendingPrune(epoch, remove, max(1, round(self.fade * local_samples))))
        return True

    def restore_pending(self, pending: PendingPrune) -> None:
        """Make `pending` the prune in progress: its channels fade out from the next training forward."""
        if self._fade is not None:
            self._fade.detach()
        self.pending = pending
        self._fade = ChannelFade(self.model, self.groups, pending.remove, pending.ramp_samples, self.entry)

    def _finish_fade(self, epoch: int) -> PruneEvent:
        pending, self.pending = self.pending, None
        self._fade.detach()
        self._fade = None
        return self._cut(epoch, pending.remove, decided=pending.decided)

    def _cut(self, epoch: int, remove: Mapping[str, list[int]], decided: int | None) -> PruneEvent:
        """Remove the channels, find the groups of the smaller model again, record the event and
        apply the stop rule."""
        before, params_before = self.widths, count_parameters(self.model)
        self.monitor.detach()
        prune_groups(
            self.model,
            self.graph,
            self.groups,
            remove,
            self.optimizer,
            reinit=self.mode == "reinit",
            init=self.init,
        )
        self.groups = self._find_groups()
        self.monitor = self._new_monitor()
        self.trigger.reset()
        self.ranking.reset()
        self._macs = self._flops_per_sample = None
        params_after = count_parameters(self.model)
        event = PruneEvent(epoch, before, self.widths, params_before, params_after, 0.0, decided)
        self.events.append(event)
        reduction = parameter_reduction(event.params_before, event.params_after)
        fixed = self.schedule or self.prune_at
        if fixed and (decided or epoch) >= max(fixed):  # the last of the given epochs
            self.finished = True
        if self.schedule is None and (len(self.events) >= self.max_prunes or reduction < self.min_reduction):
            self.finished = True
        return event
