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
from .arguments import ignored_modules, not_counted, nothing_to_prune, resolve_pruner_options
from .cost import count_parameters, inference_macs, training_flops_per_sample
from .cutting import Surgeon
from .deadline import prune_limits
from .density import DensityMonitor, checked_densities
from .events import EpochCost, PendingPrune, PruneEvent
from .fade import ChannelFade
from .groups import find_groups
from .importance import Importance, channel_scores
from .modes import entry_module, module_to_prune
from .options import NO_OPTIMIZER, method_default
from .selection import removal
from .tp_compat import build_graph
from .triggers import EpochSignal, FixedEpochs, Trigger, parameter_reduction
from .widths import PlanInput, WidthPolicy, WidthSchedule


class ADPruner:
    """Prunes `model` in training from the activation density of its channel groups.

    Call `epoch_end(epoch)` after each training epoch: it reads the densities counted during the
    epoch's training forwards, asks the trigger whether a prune is due and, if so, removes from
    every group the channels the width policy and the importance choose (`selection.removal`).
    The model, the optimizer and their state are edited in place.

    Args:
        model: the network; its layers shrink in place.
        example_input: one batch of inputs (a few samples suffice), to trace the model.
        optimizer: its parameters and state (momenta, moments) are remapped in place at each prune.
            Without one a warning says to pass it.
        trigger: when a prune is due. `"ranking"` (default: `RankingTrigger()`, when the channels a
            prune would remove stopped changing), `"density"` (`ConvergenceTrigger()`, when every
            density stopped moving), a list of epochs (`FixedEpochs`), or any `triggers.Trigger`.
            With a `WidthSchedule` leave it out: the schedule's epochs are the trigger.
        widths: how wide each group becomes: `"density"` (`DensityPlan()`, `ceil(density * width)`),
            or any `widths.WidthPolicy` (`DensityPlan(min_channels, round_to)`, `WidthSchedule`,
            `ParameterTarget`).
        importance: which channels of a group stay: a built-in name (`density`, `entropy`, `l1`,
            `bn_scale`) or a function `(group, density, graph) -> one score per channel`.
        max_prunes: pruning stops after this many prunes ... (None: the self-sizing rule decides).
        min_reduction: ... or after one that removed less than this share of the parameters.
        epochs, first_epoch: the training budget in epochs, numbered from `first_epoch`, for the
            self-sizing rule (`deadline.prune_limits`): no prune decided too late for the final
            network to train `deadline.FINAL_SHARE` of the budget, and one there if none was yet.
        fade: the share of the next epoch over which a decided prune fades its channels out; they
            are removed at that epoch's end (0: remove at once).
        bn_recalibrate: the last this many training batches of a fade re-estimate the BatchNorm
            statistics (0: no); see `fade.ChannelFade`.
        mode: `inherit` keeps the chosen channels' weights; `reinit` re-initialises the new widths
            with `init(model)`, by default the model's own `init_weights`/`_init_weights`.
        ignore: module names or modules whose output width is kept (the classifier's outputs and
            the inputs are never pruned).
        twins: modules pruned in step with the model, with the same indices (an EMA or SWA copy, a
            teacher; see `twins`); more with `add_twin`.
        check: find on a deep copy the groups whose removal breaks the model, at construction and
            before every cut (a group its cut would break keeps its width: `cutting.Surgeon`).
        process_group: the group density counts are summed over under torch.distributed.
        density_every: count densities on every k-th training forward only (an estimate: see
            `density.DensityMonitor`).

    Raises AdpruneError at construction for any option that cannot work (naming it and what to give).

    A `torch.compile`d model is pruned through the module it compiles (`_orig_mod`: the wrapper
    recompiles for the new shapes itself). Groups that cannot be pruned safely are in `skipped`; a
    model with no prunable group at all gets one warning listing them, and trains at full width. A
    group no training forward reached keeps its width at a prune and is named in the event (`uncounted`).
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        trigger: str | Iterable[int] | Trigger | None = None,
        widths: str | WidthPolicy = "density",
        importance: str | Importance = "density",
        max_prunes: int | None = method_default("max_prunes"),
        min_reduction: float = method_default("min_reduction"),
        epochs: int | None = None,
        first_epoch: int = 1,
        fade: float = method_default("fade"),
        bn_recalibrate: int = method_default("bn_recalibrate"),
        mode: str = method_default("mode"),
        init: Callable[[nn.Module], None] | None = None,
        ignore: Iterable[str | nn.Module] = (),
        twins: Iterable[nn.Module] = (),
        check: bool = True,
        process_group: Any = None,
        density_every: int = method_default("density_every"),
    ) -> None:
        self.trigger, self.widths_policy, self.importance = resolve_pruner_options(
            {k: v for k, v in locals().items() if k not in ("self", "model", "example_input", "optimizer")}
        )
        model = module_to_prune(model)
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
        self.limits = prune_limits(
            max_prunes, epochs, first_epoch, fade > 0, isinstance(self.trigger, FixedEpochs)
        )
        self.min_reduction = min_reduction
        self.fade = fade
        self.bn_recalibrate = bn_recalibrate
        self.ignore = ignored_modules(model, ignore)
        self.process_group = process_group
        self.density_every = density_every
        self.pending: PendingPrune | None = None
        self._fade: ChannelFade | None = None
        self.skipped: dict[str, str] = {}
        self.events: list[PruneEvent] = []
        self.ledger: list[EpochCost] = []
        self.finished = max_prunes == 0 or self.limits.too_short
        self.densities: dict[str, float] = {}
        self.channel_densities: dict[str, torch.Tensor] = {}
        self._flops_per_sample: int | None = None
        self._macs: int | None = None
        self._removal: tuple[int, dict[str, list[int]]] | None = None  # (epoch, removal) computed this epoch
        self.surgeon = Surgeon(
            model, example_input, optimizer, mode=mode, init=init, ignore=self.ignore, check=check
        )
        self._attach()
        for twin in twins:
            self.add_twin(twin)
        if isinstance(self.widths_policy, WidthSchedule):
            self.widths_policy.check(self.groups, self.skipped)  # fail now on names that can never work
        if not self.groups:
            warnings.warn(nothing_to_prune(model, self.skipped), stacklevel=2)

    def _attach(self) -> None:
        self.graph = build_graph(self.model, self.example_input)
        self.entry = entry_module(self.model, self.example_input)
        groups = self._find_groups()
        self.skipped.update(self.surgeon.unprunable(groups))
        self.groups = [g for g in groups if g.name not in self.skipped]
        self.monitor = self._new_monitor()

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer whose parameters and state follow every cut (settable: a new fit's optimizer)."""
        return self.surgeon.optimizer

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        self.surgeon.set_optimizer(optimizer)

    def add_twin(self, twin: nn.Module) -> None:
        """Prune `twin` in step with the model from the next cut on: the copy of the model it holds
        (itself, `.module` of an `AveragedModel` or timm's `ModelEmaV3`, ...) loses the same channels.
        Raises AdpruneError when it holds no copy of the model at its current widths."""
        self.surgeon.add_twin(twin)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state that the next epochs depend on: the trigger, events, ledger, whether
        pruning finished, the latest densities and a prune in progress. The model and the optimizer
        are saved apart; restore this into a pruner built over the model at the same widths."""
        return {
            "trigger": self.trigger.state_dict(),
            "events": [dataclasses.asdict(e) for e in self.events],
            "ledger": [dataclasses.asdict(line) for line in self.ledger], "finished": self.finished,
            "densities": self.densities,
            "pending": None if self.pending is None else dataclasses.asdict(self.pending),
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (a prune in progress resumes fading its channels out)."""
        self.trigger.load_state_dict(state["trigger"])
        self.events = [PruneEvent(**e) for e in state["events"]]
        self.ledger = [EpochCost(**line) for line in state["ledger"]]
        self.finished = bool(state["finished"])
        self.densities = dict(state["densities"])
        if state.get("pending") is not None:
            self.restore_pending(PendingPrune(**state["pending"]))

    def _new_monitor(self) -> DensityMonitor:
        return DensityMonitor(
            self.model, self.groups, entry=self.entry,
            process_group=self.process_group, every=self.density_every,
        )  # fmt: skip

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

    @property
    def uncounted(self) -> list[str]:
        """The prunable groups no training forward reached in the last epoch: a prune keeps them."""
        return [g.name for g in self.groups if g.name not in self.channel_densities]

    def model_costs(self) -> tuple[int, int]:
        """Inference MACs per sample and training FLOPs per sample of the model as it is now (measured
        once per width: cached until the next prune)."""
        if self._macs is None:
            self._macs = inference_macs(self.model, self.example_input)
            self._flops_per_sample = training_flops_per_sample(self.model, self.example_input)
        return self._macs, self._flops_per_sample

    def epoch_end(self, epoch: int, *, last: bool = False) -> PruneEvent | None:
        """Close the epoch: read densities, prune if due, append to the ledger, start a new window.

        With `fade > 0` a prune that is due is only decided here (the ledger line says so): its
        channels fade out during the next epoch and are removed at that epoch's end. Pass
        `last=True` for the final epoch of the budget: a network pruned then would never be trained
        again, so no prune is decided (one whose channels have already faded out is completed).
        Returns the prune that happened (the model, optimizer and their state are already edited in
        place), or None. Raises AdpruneError when no training forward was counted since the last call.
        """
        local_samples = self.monitor.samples_seen  # this process's; read() sums them over the ranks
        self.channel_densities = self.monitor.read()
        samples = self.monitor.samples_seen
        if samples == 0:
            raise AdpruneError(
                "no training forward pass was counted since the last epoch_end: call it after "
                "training an epoch with model.train()"
            )
        self.densities = {name: float(d.mean()) for name, d in self.channel_densities.items()}
        due = self.trigger.update(
            EpochSignal(epoch, self.densities, self.widths, lambda: self._removal_at(epoch))
        ) or self.limits.sizes_once(epoch, pruned_yet=bool(self.events) or self.pending is not None)
        macs, flops_per_sample = self.model_costs()
        params = count_parameters(self.model)
        total = (self.ledger[-1].train_flops_total if self.ledger else 0) + flops_per_sample * samples
        line = EpochCost(epoch, params, macs, flops_per_sample * samples, total, samples, params_after=params)
        line.mask_change = getattr(self.trigger, "last_change", None)
        started = time.perf_counter()
        event = None
        if self.pending is not None:
            event = self._finish_fade(epoch)
        elif not last and not self.finished and due:
            if self.fade > 0:
                line.decided = self._start_fade(epoch, local_samples)
            else:
                event = self._prune(epoch)
        if event is not None or line.decided:
            line.prune_s = time.perf_counter() - started
        if event is not None:
            event.seconds = line.prune_s
            line.pruned = True
            line.params_after = event.params_after
        if self.limits.closed(epoch) and self.pending is None:
            self.finished = True
        self.ledger.append(line)
        self.monitor.reset()
        self._removal = None
        return event

    def planned_widths(self) -> dict[str, int]:
        """The widths a prune would leave now, from the densities the last `epoch_end` read (or that
        were given): the width policy's widths as `selection.removal` realises them."""
        epoch = self.ledger[-1].epoch if self.ledger else 0
        remove = self._removal_at(epoch)
        return {g.name: g.width - len(remove.get(g.name, ())) for g in self.groups}

    def prune(
        self, epoch: int, channel_densities: Mapping[str, torch.Tensor] | None = None
    ) -> PruneEvent | None:
        """Prune now, from `channel_densities` (group name -> one density per channel) or, when None,
        from the densities the last `epoch_end` read. `epoch_end` calls this when a prune is due.

        Groups absent from `channel_densities` keep their width. The model and the optimizer are
        changed in place, the monitor restarts its window, and the event is recorded in `events`.
        Returns None when the policy keeps every width (pruning then stops: `finished` is set).
        An explicit call prunes even after `finished` or `max_prunes`, without fading. Raises
        AdpruneError while a prune is fading out, without densities, or for densities that do not fit.
        """
        if self.pending is not None:
            raise AdpruneError(
                f"the prune decided after epoch {self.pending.decided} is still fading out its channels: "
                "call epoch_end to complete it before pruning again"
            )
        if channel_densities is not None:
            self.channel_densities = checked_densities(channel_densities, self.widths, self.skipped)
            self.densities = {name: float(d.mean()) for name, d in self.channel_densities.items()}
            self._removal = None
        elif not self.channel_densities:
            raise AdpruneError(
                "no densities to prune from: train an epoch and call epoch_end first, "
                "or pass channel_densities={group name: per-channel densities}"
            )
        started = time.perf_counter()
        event = self._prune(epoch)
        self._removal = None
        if event is not None:
            event.seconds = time.perf_counter() - started
        return event

    def _removal_at(self, epoch: int) -> dict[str, list[int]]:
        """The channels a prune at `epoch` removes, per group (computed once per epoch): the
        importance scores each counted group, the width policy sets the widths, `selection.removal`
        chooses. Groups no training forward reached keep their width."""
        if self._removal is None or self._removal[0] != epoch:
            scores = {
                g.name: channel_scores(self.importance, g, self.channel_densities[g.name], self.graph)
                for g in self.groups
                if g.name in self.channel_densities
            }
            plan = PlanInput(
                epoch, self.groups, self.densities, scores, self.model, self.example_input, self.skipped
            )
            self._removal = (epoch, removal(scores, self.widths_policy.widths(plan), self.groups))
        return self._removal[1]

    def _prune(self, epoch: int) -> PruneEvent | None:
        remove = self._removal_at(epoch)
        if not remove:
            self.finished = True
            return None
        return self._cut(epoch, remove, decided=None)

    def _start_fade(self, epoch: int, local_samples: int) -> bool:
        """Decide the prune of `epoch` and start fading its channels out; False (and `finished`)
        when nothing would go."""
        remove = self._removal_at(epoch)
        if not remove:
            self.finished = True
            return False
        self.restore_pending(PendingPrune(epoch, remove, local_samples, self.uncounted))
        return True

    def restore_pending(self, pending: PendingPrune) -> None:
        """Make `pending` the prune in progress: its channels fade out from the next training forward."""
        if self._fade is not None:
            self._fade.detach()
        self.pending = pending
        self._fade = ChannelFade(
            self.model, self.groups, pending.remove, pending.epoch_samples, fade=self.fade,
            recalibrate=self.bn_recalibrate, entry=self.entry,
        )  # fmt: skip

    def _finish_fade(self, epoch: int) -> PruneEvent:
        pending, self.pending = self.pending, None
        self._fade.detach()
        self._fade = None
        return self._cut(epoch, pending.remove, decided=pending.decided, uncounted=pending.uncounted)

    def _cut(
        self,
        epoch: int,
        remove: Mapping[str, list[int]],
        decided: int | None,
        uncounted: list[str] | None = None,
    ) -> PruneEvent:
        """Remove the channels, find the groups of the smaller model again, record the event and
        apply the stop rule."""
        uncounted = self.uncounted if uncounted is None else uncounted
        if uncounted:
            warnings.warn(not_counted(uncounted), stacklevel=3)
        before, params_before = self.widths, count_parameters(self.model)
        self.surgeon.check_ready()  # before anything changes
        self.monitor.detach()
        _, refused = self.surgeon.cut(self.graph, self.groups, remove)
        self.skipped.update(refused)
        self.groups = self._find_groups()
        self.monitor = self._new_monitor()
        self.trigger.reset()
        self._macs = self._flops_per_sample = None
        params_after = count_parameters(self.model)
        event = PruneEvent(epoch, before, self.widths, params_before, params_after, 0.0, decided, uncounted)
        self.events.append(event)
        small = parameter_reduction(event.params_before, event.params_after) < self.min_reduction
        ends = self.trigger.exhausted(decided or epoch) or self.limits.count_reached(len(self.events))
        self.finished = self.finished or ends or small
        return event
