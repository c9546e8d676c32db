"""Budget awareness: the last epoch after which a prune may still be decided. No torch.

A network pruned late spends most of the budget at a width it no longer has; on a short budget the
time spent training at the final width matters more than the weights it inherits (fashion-short:
two prunes after epochs 2 and 4 of 8 ended 2.9 points below one shrink factor trained from the
start). So a self-sizing pruner leaves the final network at least `FINAL_SHARE` of the epochs:
it decides no prune after `last_decision_epoch`, and when nothing has been pruned by then it
prunes there, from the densities measured so far (it sizes once). With one-epoch fades that is
after epoch 5 of 20 (the ranking trigger's usual two prunes, decided after epochs 2 and 5, both
fit), after epoch 1 of 8 (one prune, sized from the first epoch's densities) and no prune at all
in 6 epochs or fewer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FINAL_SHARE = 0.7
"""The share of the budget's epochs the network trains at its final widths, at least."""

UNSIZED_MAX_PRUNES = 2
"""How many prunes a pruner that does not know its budget (`max_prunes=None`, no `epochs`) makes at most."""


@dataclass(frozen=True)
class PruneLimits:
    """How far a pruner may go: at most `max_prunes` prunes (None: no count), none decided after
    `deadline` (None: no deadline); `too_short`: the budget affords no prune at all."""

    max_prunes: int | None
    deadline: int | None
    too_short: bool

    def count_reached(self, prunes: int) -> bool:
        """True once `prunes` prunes are as many as allowed."""
        return self.max_prunes is not None and prunes >= self.max_prunes

    def sizes_once(self, epoch: int, pruned_yet: bool) -> bool:
        """True at the deadline for a network that has not been pruned (nor a prune decided) yet."""
        return epoch == self.deadline and not pruned_yet

    def closed(self, epoch: int) -> bool:
        """True from the deadline on: no prune may be decided after `epoch`."""
        return self.deadline is not None and epoch >= self.deadline


def prune_limits(
    max_prunes: int | None, epochs: int | None, first_epoch: int, fade: bool, fixed_epochs: bool
) -> PruneLimits:
    """The limits of `ADPruner(max_prunes=..., epochs=..., first_epoch=..., fade=...)`: a prune count
    or a list of epochs (`fixed_epochs`) given by hand is kept as it is; otherwise the self-sizing
    rule's deadline for a budget of `epochs` epochs numbered from `first_epoch`, or, without
    `epochs`, at most `UNSIZED_MAX_PRUNES` prunes."""
    if max_prunes is not None or fixed_epochs:
        return PruneLimits(max_prunes, None, False)
    if epochs is None:
        return PruneLimits(UNSIZED_MAX_PRUNES, None, False)
    deadline = last_decision_epoch(first_epoch, first_epoch + epochs - 1, fade)
    return PruneLimits(None, deadline, deadline is None)


def last_decision_epoch(first_epoch: int, last_epoch: int, fade: bool) -> int | None:
    """The last epoch after which a prune may be decided, for a budget of epochs numbered
    `first_epoch`..`last_epoch` (as `epoch_end` counts them), or None when the budget is too short
    for any prune to leave `FINAL_SHARE` of it. With `fade` a prune decided after epoch d is cut after
    d + 1; without, after d."""
    epochs = last_epoch - first_epoch + 1
    last_cut = last_epoch - math.ceil(FINAL_SHARE * epochs)
    decision = last_cut - 1 if fade else last_cut
    return decision if decision >= first_epoch else None
