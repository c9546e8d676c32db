"""What the pruner records: the ledger line of each epoch, each prune, and a prune in progress."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PruneEvent:
    """One prune: when, the widths before and after, the parameters before and after, its seconds."""

    epoch: int
    widths_before: dict[str, int]
    widths_after: dict[str, int]
    params_before: int
    params_after: int
    seconds: float
    decided: int | None = None  # the epoch the prune was decided, when its channels faded out first
    uncounted: list[str] = field(default_factory=list)  # groups no training forward reached: kept whole


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
    decided: bool = False  # a prune was decided: its channels fade out during the next epoch
    mask_change: float | None = None  # share of channels whose fate under the plan changed since last epoch


@dataclass
class PendingPrune:
    """A prune decided at the end of epoch `decided`: channels `remove[group]` fade out during the next
    epoch, expected to hold `epoch_samples` training samples of this process (as the deciding one
    did), and are removed at its end. `uncounted` names the groups it keeps whole for want of a
    density."""

    decided: int
    remove: dict[str, list[int]]
    epoch_samples: int
    uncounted: list[str] = field(default_factory=list)
