"""The accuracy guard follows each prune from its decision through its recovery, and asks for a roll
back exactly when validation accuracy ended more than the budget below where the unpruned network
was heading (the learning curve through the validation accuracies since the last cut)."""

import pytest

from adprune.train.guard import PruneGuard, PruneWatch
from adprune.train.trajectory import expected_accuracy


def _record(epoch, train_acc, val_acc=None, pruned=False, decided=False):
    return {
        "epoch": epoch,
        "train_acc": train_acc,
        "val_acc": val_acc,
        "pruned": pruned,
        "prune_decided": decided,
    }


def test_a_prune_cut_at_once_is_checked_after_its_recovery_epochs_against_the_trajectory():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=2)
    assert guard.observe(_record(1, 0.60, 0.70)) == ([], None)
    assert guard.observe(_record(2, 0.70, 0.80, pruned=True)) == ([], None)
    assert guard.rollback_points() == {1}
    assert guard.observe(_record(3, 0.55, 0.74)) == ([], None)
    closed, back_to = guard.observe(_record(4, 0.75, 0.84))
    assert back_to is None and not guard.watching
    (watch,) = closed
    assert (watch.decided, watch.cut, watch.train_acc_after, watch.val_acc_after) == (2, 2, 0.55, 0.84)
    assert watch.trajectory == [[1, 0.70], [2, 0.80]]
    assert watch.val_acc_expected == pytest.approx(0.85)  # 0.9 - 0.2 / epoch through both points
    assert watch.drop_pts() == pytest.approx(1.0)


def test_a_prune_that_recovered_past_its_decision_is_still_rolled_back_when_it_fell_behind():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=2)
    guard.observe(_record(1, 0.60, 0.70))
    guard.observe(_record(2, 0.70, 0.80, pruned=True))
    guard.observe(_record(3, 0.55, 0.74))
    closed, back_to = guard.observe(_record(4, 0.75, 0.82))  # above 0.80, but 3 points below 0.85
    assert back_to == 1 and closed[0].rolled_back
    assert closed[0].drop_pts() == pytest.approx(3.0)


def test_a_faded_prune_counts_its_fade_epoch_and_rolls_back_before_its_decision():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=1)
    guard.observe(_record(3, 0.80, 0.85, decided=True))
    guard.observe(_record(4, 0.78, 0.84, pruned=True))  # the fade epoch; the cut at its end
    assert guard.rollback_points() == {2}
    closed, back_to = guard.observe(_record(5, 0.79, 0.80))
    assert back_to == 2
    assert closed == [
        PruneWatch(
            3, 0.80, 0.85, cut=4, train_acc_after=0.78, val_acc_after=0.80, rolled_back=True,
            trajectory=[[3, 0.85]], val_acc_expected=0.85,
        )
    ]  # fmt: skip
    assert not guard.watching and guard.closed == closed


def test_the_trajectory_restarts_at_each_cut_and_leaves_out_fade_epochs():
    guard = PruneGuard(max_drop=None, recovery_epochs=1)
    guard.observe(_record(1, 0.6, 0.70))
    guard.observe(_record(2, 0.7, 0.80, decided=True))
    guard.observe(_record(3, 0.7, 0.60, pruned=True))  # channels fading out: not the unpruned network
    guard.observe(_record(4, 0.8, 0.82))
    guard.observe(_record(5, 0.8, 0.84, decided=True))
    (second,) = guard.open
    assert guard.closed[0].trajectory == [[1, 0.70], [2, 0.80]]
    assert second.trajectory == [[4, 0.82], [5, 0.84]]


@pytest.mark.parametrize(
    ("points", "epoch", "expected"),
    [
        ([], 5, None),
        ([[3, 0.8]], 5, 0.8),
        ([[1, 0.7], [2, 0.8]], 4, 0.85),
        ([[1, 0.5], [2, 0.75], [4, 0.875]], 8, 0.9375),  # 1 - 0.5 / epoch, fitted exactly
        ([[4, 0.82], [5, 0.80]], 7, 0.80),  # falling: held at the last value, not extrapolated down
    ],
)
def test_the_unpruned_network_is_expected_on_its_fitted_learning_curve(points, epoch, expected):
    assert expected_accuracy(points, epoch) == pytest.approx(expected)


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
    guard.observe(_record(1, 0.4, 0.5))
    guard.observe(_record(2, 0.5, 0.6, decided=True))
    clone = PruneGuard(max_drop=1.0)
    clone.load_state_dict(guard.state_dict())
    assert clone.open == guard.open and clone.rollback_points() == {1}
    assert clone.trajectory == guard.trajectory == [[1, 0.5], [2, 0.6]]


@pytest.mark.parametrize("kwargs", [{"max_drop": -1.0}, {"max_drop": 1.0, "recovery_epochs": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        PruneGuard(**kwargs)
