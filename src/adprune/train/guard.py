"""The accuracy guard: follows every prune from its decision to the end of its recovery.

For each prune it records the training accuracy of the epoch that decided it and the lowest training
accuracy of the epochs after it (the epoch its channels fade out in, and the first epoch of the
pruned network), and, where a validation split is held out, the validation accuracy at the decision
and its mean over the `recovery_epochs` epochs of training the pruned network. A prune's cost is how
far that mean stayed below where the unpruned network was heading: the learning curve fitted to the
validation accuracies of every epoch before the cut (`trajectory.judge_cut`). When the cost exceeds
`max_drop` points (the accuracy budget), the guard asks for a roll back to the checkpoint written
before the deciding epoch, after which the run trains on without pruning.

Pure bookkeeping over the epochs' metrics records: no torch, no files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .trajectory import judge_cut


@dataclass
class PruneWatch:
    """One prune under watch. Accuracies are fractions; None where not measured."""

    decided: int
    train_acc_before: float
    val_acc_before: float | None
    cut: int | None = None
    train_acc_after: float | None = None
    val_acc_after: float | None = None
    rolled_back: bool = False
    val_acc_expected: float | None = None
    val_epochs: list[int] = dataclasses.field(default_factory=list)

    def drop_pts(self) -> float | None:
        """The prune's cost in points: the mean validation accuracy of the epochs `val_epochs` after
        the cut below where the unpruned network was heading (`val_acc_expected`; without it, below
        the accuracy at the decision)."""
        reference = self.val_acc_before if self.val_acc_expected is None else self.val_acc_expected
        if reference is None or self.val_acc_after is None:
            return None
        return 100 * (reference - self.val_acc_after)


class PruneGuard:
    """Watches prunes through the epochs' metrics records; see the module docstring.

    Feed every epoch's record, in order, to `observe`. A record carries `epoch`, `train_acc`,
    `val_acc` (None without a validation split), `pruned` (channels were removed at its end) and
    `prune_decided` (a prune was decided at its end, its channels fade out next epoch). The
    validation accuracies of the epochs in which no channel was fading out are kept in `stretches`,
    a new one begun at each of the `cuts`.
    """

    def __init__(self, max_drop: float | None, recovery_epochs: int = 2) -> None:
        if max_drop is not None and max_drop < 0:
            raise ValueError(f"max_drop must be >= 0 points, got {max_drop}")
        if recovery_epochs < 1:
            raise ValueError(f"recovery_epochs must be >= 1, got {recovery_epochs}")
        self.max_drop = max_drop
        self.recovery_epochs = recovery_epochs
        self.open: list[PruneWatch] = []
        self.closed: list[PruneWatch] = []
        self.stretches: list[list[list[float]]] = [[]]
        self.cuts: list[int] = []

    @property
    def watching(self) -> bool:
        """True while some prune has not finished its recovery."""
        return bool(self.open)

    def rollback_points(self) -> set[int]:
        """The epochs whose checkpoints a roll back may need (0: the initial state)."""
        return {watch.decided - 1 for watch in self.open}

    def observe(
        self, record: Mapping[str, Any], *, last: bool = False
    ) -> tuple[list[PruneWatch], int | None]:
        """Take one epoch's record; returns the watches that closed with it and the epoch whose
        checkpoint to roll back to (None to train on). `last` closes every open watch."""
        epoch, train_acc, val_acc = record["epoch"], record["train_acc"], record.get("val_acc")
        for watch in self.open:
            if epoch > watch.decided and (watch.cut is None or epoch <= watch.cut + 1):
                lowest = watch.train_acc_after
                watch.train_acc_after = train_acc if lowest is None else min(lowest, train_acc)
        fading = [w for w in self.open if w.cut is None]
        if val_acc is not None and not fading:
            self.stretches[-1].append([epoch, val_acc])
        if record["pruned"]:
            if fading:
                fading[0].cut = epoch
            else:
                self.open.append(PruneWatch(epoch, train_acc, val_acc, cut=epoch))
            self.cuts.append(epoch)
            self.stretches.append([])
        if record.get("prune_decided"):
            self.open.append(PruneWatch(epoch, train_acc, val_acc))
        done = [w for w in self.open if last or (w.cut is not None and epoch >= w.cut + self.recovery_epochs)]
        for watch in done:
            self._judge(watch, epoch, val_acc)
            self.open.remove(watch)
        self.closed.extend(done)
        failing = [w for w in done if self._too_costly(w)]
        if not failing:
            return done, None
        first = min(failing, key=lambda w: w.decided)
        first.rolled_back = True
        self.open.clear()
        self._forget_after(first.decided - 1)
        return done, first.decided - 1

    def _judge(self, watch: PruneWatch, epoch: int, val_acc: float | None) -> None:
        """Fill in the watch's validation figures: the epochs after its cut (at the run's last epoch,
        that epoch when none followed the cut) against the curve through every epoch before it."""
        cut_index = len(self.cuts) if watch.cut is None else self.cuts.index(watch.cut)
        before = self.stretches[: cut_index + 1]
        after = self.stretches[cut_index + 1] if cut_index + 1 < len(self.stretches) else []
        if not after and val_acc is not None:
            after = [[epoch, val_acc]]
        judged = judge_cut(before, after)
        if judged is not None:
            watch.val_acc_expected, watch.val_acc_after = judged
            watch.val_epochs = [int(p[0]) for p in after]

    def _forget_after(self, epoch: int) -> None:
        """Drop the validation accuracies and cuts after `epoch`, the checkpoint a roll back returns to."""
        kept = sum(1 for cut in self.cuts if cut <= epoch)
        self.cuts = self.cuts[:kept]
        self.stretches = [[p for p in stretch if p[0] <= epoch] for stretch in self.stretches[: kept + 1]]

    def _too_costly(self, watch: PruneWatch) -> bool:
        drop = watch.drop_pts()
        return self.max_drop is not None and drop is not None and drop > self.max_drop

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state: the open and closed watches, the validation stretches and the cuts."""
        return {
            "open": [dataclasses.asdict(w) for w in self.open],
            "closed": [dataclasses.asdict(w) for w in self.closed],
            "stretches": self.stretches,
            "cuts": self.cuts,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.open = [_watch(w) for w in state["open"]]
        self.closed = [_watch(w) for w in state["closed"]]
        self.stretches = [[list(p) for p in stretch] for stretch in state.get("stretches", [[]])]
        self.cuts = list(state.get("cuts", []))


def _watch(saved: Mapping[str, Any]) -> PruneWatch:
    """A watch from its saved fields; fields an earlier version saved and this one lacks are ignored."""
    known = {f.name for f in dataclasses.fields(PruneWatch)}
    return PruneWatch(**{k: v for k, v in saved.items() if k in known})
