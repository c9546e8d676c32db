"""The accuracy guard follows each prune from its decision through its recovery, and asks for a roll
back exactly when the mean validation accuracy of its recovery epochs stayed more than the budget
below where the unpruned network was heading (the learning curve through every epoch before the cut)."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adprune.train.guard import PruneGuard, PruneWatch
from adprune.train.trajectory import curve_slope, judge_cut


def _record(epoch, train_acc, val_acc=None, pruned=False, decided=False):
    return {
        "epoch": epoch,
        "train_acc": train_acc,
        "val_acc": val_acc,
        "pruned": pruned,
        "prune_decided": decided,
    }


def test_a_prune_cut_at_once_is_judged_on_its_recovery_epochs_against_the_curve_before_it():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=2)
    assert guard.observe(_record(1, 0.60, 0.70)) == ([], None)  # on 0.9 - 0.2 / epoch
    assert guard.observe(_record(2, 0.70, 0.80, pruned=True)) == ([], None)
    assert guard.rollback_points() == {1}
    assert guard.observe(_record(3, 0.55, 0.9 - 0.2 / 3 - 0.01)) == ([], None)
    closed, back_to = guard.observe(_record(4, 0.75, 0.85 - 0.01))
    assert back_to is None and not guard.watching
    (watch,) = closed
    assert (watch.decided, watch.cut, watch.train_acc_after, watch.val_epochs) == (2, 2, 0.55, [3, 4])
    assert watch.val_acc_expected == pytest.approx(0.9 - 0.2 * (1 / 3 + 1 / 4) / 2)
    assert watch.drop_pts() == pytest.approx(1.0)


def test_a_prune_that_recovered_past_its_decision_is_still_rolled_back_when_it_fell_behind():
    guard = PruneGuard(max_drop=2.0, recovery_epochs=2)
    guard.observe(_record(1, 0.60, 0.70))
    guard.observe(_record(2, 0.70, 0.80, pruned=True))
    guard.observe(_record(3, 0.55, 0.9 - 0.2 / 3 - 0.03))
    closed, back_to = guard.observe(_record(4, 0.75, 0.82))  # above 0.80, but 3 points below the curve
    assert back_to == 1 and closed[0].rolled_back
    assert closed[0].drop_pts() == pytest.approx(3.0)
    assert (guard.stretches, guard.cuts) == ([[[1, 0.70]]], [])  # what the checkpoint of epoch 1 saw


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
            val_acc_expected=0.85, val_epochs=[5],
        )
    ]  # fmt: skip
    assert not guard.watching and guard.closed == closed


def test_validation_accuracies_fall_into_stretches_between_cuts_and_leave_out_fade_epochs():
    guard = PruneGuard(max_drop=None, recovery_epochs=1)
    guard.observe(_record(1, 0.6, 0.70))
    guard.observe(_record(2, 0.7, 0.80, decided=True))
    guard.observe(_record(3, 0.7, 0.60, pruned=True))  # channels fading out: not the unpruned network
    guard.observe(_record(4, 0.8, 0.82))
    guard.observe(_record(5, 0.8, 0.84, decided=True))
    assert guard.stretches == [[[1, 0.70], [2, 0.80]], [[4, 0.82], [5, 0.84]]]
    assert guard.cuts == [3] and guard.closed[0].val_epochs == [4]


@pytest.mark.parametrize(
    ("before", "after", "judged"),
    [
        ([], [[5, 0.8]], None),
        ([[]], [[5, 0.8]], None),
        ([[[3, 0.8]]], [], None),
        ([[[3, 0.8]]], [[5, 0.75]], (0.8, 0.75)),  # one epoch: a flat curve
        ([[[1, 0.5], [2, 0.75], [4, 0.875]]], [[8, 0.9]], (0.9375, 0.9)),  # 1 - 0.5 / epoch, exactly
        ([[[4, 0.82], [5, 0.80]]], [[7, 0.79]], (0.81, 0.79)),  # falling: held level, not extrapolated down
        ([[[1, 0.7], [2, 0.8]], [[5, 0.81]]], [[7, 0.8], [8, 0.8]], (0.85 - 0.2 * (1 / 7 + 1 / 8) / 2, 0.8)),
    ],
)
def test_a_cut_is_judged_against_the_learning_curve_through_the_stretches_before_it(before, after, judged):
    result = judge_cut(before, after)
    assert result == (None if judged is None else pytest.approx(judged))


@given(
    shape=st.floats(0.0, 0.5),
    levels=st.lists(st.floats(0.3, 0.9), min_size=1, max_size=3),
    cost=st.floats(-0.1, 0.2),
    sizes=st.lists(st.integers(1, 3), min_size=3, max_size=3),
)
def test_on_an_exact_curve_the_cost_is_the_fall_of_its_level(shape, levels, cost, sizes):
    epochs = iter(range(1, 100))
    before = [[[e, level - shape / e] for e in itertools.islice(epochs, 2 if i == 0 else sizes[i])]
              for i, level in enumerate(levels)]  # fmt: skip
    after = [[e, levels[-1] - cost - shape / e] for e in itertools.islice(epochs, sizes[-1])]
    expected, reached = judge_cut(before, after)
    assert 100 * (expected - reached) == pytest.approx(100 * cost, abs=1e-6)
    assert curve_slope(before) == pytest.approx(-shape, abs=1e-9)


def test_without_a_limit_or_a_validation_split_the_guard_only_records():
    for guard, val in (
        (PruneGuard(None, recovery_epochs=1), 0.1),
        (PruneGuard(0.0, recovery_epochs=1), None),
    ):
        guard.observe(_record(1, 0.9, 0.9 if val else None, pruned=True))
        closed, back_to = guard.observe(_record(2, 0.2, val))
        assert back_to is None and closed[0].train_acc_after == 0.2


def test_the_last_epoch_closes_a_prune_whose_recovery_the_budget_cut_short():
    guard = PruneGuard(max_drop=1.0, recovery_epochs=3)
    guard.observe(_record(4, 0.9, 0.9, decided=True))
    closed, back_to = guard.observe(_record(5, 0.8, 0.85, pruned=True), last=True)
    assert back_to == 3 and closed[0].cut == 5 and closed[0].val_acc_after == 0.85
    assert closed[0].val_epochs == [5]  # no epoch followed the cut: the faded network's own


def test_state_round_trips_mid_watch():
    guard = PruneGuard(max_drop=1.0)
    guard.observe(_record(1, 0.4, 0.5))
    guard.observe(_record(2, 0.5, 0.6, decided=True))
    clone = PruneGuard(max_drop=1.0)
    clone.load_state_dict(guard.state_dict())
    assert clone.open == guard.open and clone.rollback_points() == {1}
    assert clone.stretches == guard.stretches == [[[1, 0.5], [2, 0.6]]] and clone.cuts == []


def test_a_state_saved_by_an_earlier_version_loads_without_the_fields_it_no_longer_keeps():
    guard = PruneGuard(max_drop=1.0)
    old = {"decided": 2, "train_acc_before": 0.5, "val_acc_before": 0.6, "trajectory": [[1, 0.5]]}
    guard.load_state_dict({"open": [old], "closed": [], "trajectory": [[1, 0.5]]})
    assert guard.open == [PruneWatch(2, 0.5, 0.6)] and guard.stretches == [[]]


@pytest.mark.parametrize("kwargs", [{"max_drop": -1.0}, {"max_drop": 1.0, "recovery_epochs": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        PruneGuard(**kwargs)
