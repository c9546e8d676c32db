"""The accuracy guard: follows every prune from its decision to the end of its recovery.

For each prune it records the training accuracy of the epoch that decided it and the lowest training
accuracy of the epochs after it (the epoch its channels fade out in, and the first epoch of the
pruned network), and, where a validation split is held out, the validation accuracy at the decision
and after `recovery_epochs` epochs of training the pruned network. A prune's cost is how far that
accuracy stayed below where the unpruned network was heading: the learning curve fitted to the
validation accuracies of the epochs from the previous cut to the decision
(`trajectory.expected_accuracy`). When the cost exceeds `max_drop` points (the accuracy budget), the
guard asks for a roll back to the checkpoint written before the deciding epoch, after which the run
trains on without pruning.

Pure bookkeeping over the epochs' metrics records: no torch, no files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .trajectory import expected_accuracy


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
    trajectory: list[list[float]] = dataclasses.field(default_factory=list)
    val_acc_expected: float | None = None

    def drop_pts(self) -> float | None:
        """The prune's cost in points: validation accuracy at the end of recovery below where the
        unpruned network was heading (`val_acc_expected`; without a trajectory, below the accuracy at
        the decision)."""
        reference = self.val_acc_before if self.val_acc_expected is None else self.val_acc_expected
        if reference is None or self.val_acc_after is None:
            return None
        return 100 * (reference - self.val_acc_after)


class PruneGuard:
    """Watches prunes through the epochs' metrics records; see the module docstring.

    Feed every epoch's record, in order, to `observe`. A record carries `epoch`, `train_acc`,
    `val_acc` (None without a validation split), `pruned` (channels were removed at its end) and
    `prune_decided` (a prune was decided at its end, its channels fade out next epoch). The
    validation accuracies of the epochs since the last cut in which no channel was fading out are
    the unpruned network's trajectory; each prune keeps the trajectory up to its decision.
    """

    def __init__(self, max_drop: float | None, recovery_epochs: int = 1) -> None:
        if max_drop is not None and max_drop < 0:
            raise ValueError(f"max_drop must be >= 0 points, got {max_drop}")
        if recovery_epochs < 1:
            raise ValueError(f"recovery_epochs must be >= 1, got {recovery_epochs}")
        self.max_drop = max_drop
        self.recovery_epochs = recovery_epochs
        self.open: list[PruneWatch] = []
        self.closed: list[PruneWatch] = []
        self.trajectory: list[list[float]] = []

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
            self.trajectory.append([epoch, val_acc])
        if record["pruned"]:
            if fading:
                fading[0].cut = epoch
            else:
                trajectory = list(self.trajectory)
                self.open.append(PruneWatch(epoch, train_acc, val_acc, cut=epoch, trajectory=trajectory))
            self.trajectory = []
        if record.get("prune_decided"):
            self.open.append(PruneWatch(epoch, train_acc, val_acc, trajectory=list(self.trajectory)))
        done = [w for w in self.open if last or (w.cut is not None and epoch >= w.cut + self.recovery_epochs)]
        for watch in done:
            watch.val_acc_after = val_acc
            watch.val_acc_expected = expected_accuracy(watch.trajectory, epoch)
            self.open.remove(watch)
        self.closed.extend(done)
        failing = [w for w in done if self._too_costly(w)]
        if not failing:
            return done, None
        first = min(failing, key=lambda w: w.decided)
        first.rolled_back = True
        self.open.clear()
        return done, first.decided - 1

    def _too_costly(self, watch: PruneWatch) -> bool:
        drop = watch.drop_pts()
        return self.max_drop is not None and drop is not None and drop > self.max_drop

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state: the open and closed watches and the trajectory since the last cut."""
        return {
            "open": [dataclasses.asdict(w) for w in self.open],
            "closed": [dataclasses.asdict(w) for w in self.closed],
            "trajectory": self.trajectory,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.open = [PruneWatch(**w) for w in state["open"]]
        self.closed = [PruneWatch(**w) for w in state["closed"]]
        self.trajectory = [list(p) for p in state.get("trajectory", [])]
