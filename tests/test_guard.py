"""The accuracy guard follows each prune from its decision through its recovery, and asks for a roll
back exactly when validation accuracy fell by more than the allowed points."""

import pytest

from adprune.train.guard import PruneGuard, PruneWatch


def _record(epoch, train_acc, val_acc=None, pruned=False, decided=False):
    return {
        "epoch": epoch,
        "train_acc": train_acc,
        "val_acc": val_acc,
        "pruned": pruned,
        "prune_decided": decided,
    }


def test_a_prune_cut_at_once_is_checked_after_its_recovery_epochs():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=2)
    assert guard.observe(_record(1, 0.60, 0.70)) == ([], None)
    assert guard.observe(_record(2, 0.70, 0.80, pruned=True)) == ([], None)
    assert guard.rollback_points() == {1}
    assert guard.observe(_record(3, 0.55, 0.74)) == ([], None)
    closed, back_to = guard.observe(_record(4, 0.75, 0.79))
    assert back_to is None and not guard.watching
    assert closed == [PruneWatch(2, 0.70, 0.80, cut=2, train_acc_after=0.55, val_acc_after=0.79)]
    assert closed[0].drop_pts() == pytest.approx(1.0)


def test_a_faded_prune_counts_its_fade_epoch_and_rolls_back_before_its_decision():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=1)
    guard.observe(_record(3, 0.80, 0.85, decided=True))
    guard.observe(_record(4, 0.78, 0.84, pruned=True))  # the fade epoch; the cut at its end
    assert guard.rollback_points() == {2}
    closed, back_to = guard.observe(_record(5, 0.79, 0.80))
    assert back_to == 2
    assert closed == [
        PruneWatch(3, 0.80, 0.85, cut=4, train_acc_after=0.78, val_acc_after=0.80, rolled_back=True)
    ]
    assert not guard.watching and guard.closed == closed


def test_without_a_limit_or_a_validation_split_the_guard_only_records():
    for guard, val in ((PruneGuard(max_drop=None), 0.1), (PruneGuard(max_drop=0.0), None)):
        guard.observe(_record(1, 0.9, 0.9 if val else None, pruned=True))
        closed, back_to = guard.observe(_record(2, 0.2, val))
        assert back_to is None and closed[0].train_acc_after == 0.2


def test_the_last_epoch_closes_a_prune_whose_recovery_the_budget_cut_short():
    guard = PruneGuard(max_drop=1.0, recovery_epochs=3)
    guard.observe(_record(4, 0.9, 0.9, decided=True))
    closed, back_to = guard.observe(_record(5, 0.8, 0.85, pruned=True), last=True)
    assert back_to == 3 and closed[0].cut == 5 and closed[0].val_acc_after == 0.85


def test_state_round_trips_mid_watch():
    guard = PruneGuard(max_drop=1.0)
    guard.observe(_record(2, 0.5, 0.6, decided=True))
    clone = PruneGuard(max_drop=1.0)
    clone.load_state_dict(guard.state_dict())
    assert clone.open == guard.open and clone.rollback_points() == {1}


@pytest.mark.parametrize("kwargs", [{"max_drop": -1.0}, {"max_drop": 1.0, "recovery_epochs": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        PruneGuard(**kwargs)
