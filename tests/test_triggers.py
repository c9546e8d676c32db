"""The density plan and the triggers give exactly the widths and decisions they promise."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adprune import AdpruneError
from adprune.prune.triggers import (
    ConvergenceTrigger,
    EpochSignal,
    FixedEpochs,
    RankingTrigger,
    removal_change,
    resolve_trigger,
)
from adprune.prune.widths import plan_width, plan_widths


def _densities(densities, epoch=0):
    return EpochSignal(epoch, densities, {}, lambda: {})


def _removal(removal, widths, epoch=0):
    return EpochSignal(epoch, {}, widths, lambda: removal)


@pytest.mark.parametrize(
    ("density", "width", "min_channels", "round_to", "expected"),
    [
        (0.5, 64, 1, 1, 32),
        (0.501, 64, 1, 1, 33),
        (0.3, 64, 1, 8, 24),  # ceil(19.2) = 20, rounded up to 24
        (0.01, 64, 4, 1, 4),  # floor
        (0.0, 64, 1, 1, 1),
        (1.0, 64, 1, 1, 64),
        (1.7, 64, 1, 1, 64),
        (0.9, 10, 1, 8, 10),  # rounding never exceeds the width
        (0.1, 3, 8, 1, 3),  # a floor above the width keeps the width
        (math.nan, 48, 4, 8, 48),  # a diverged layer is never cut
        (0.25, 64, 1, 1, 16),  # exact products are not bumped up by float error
    ],
)
def test_plan_width(density, width, min_channels, round_to, expected):
    assert plan_width(density, width, min_channels=min_channels, round_to=round_to) == expected


def test_plan_widths_keeps_groups_without_density():
    widths = plan_widths({"a": 0.5, "b": 0.25}, {"a": 64, "b": 128, "c": 32}, min_channels=8)
    assert widths == {"a": 32, "b": 32, "c": 32}


@given(
    density=st.floats(0, 1),
    width=st.integers(1, 4096),
    min_channels=st.integers(1, 64),
    round_to=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_plan_width_properties(density, width, min_channels, round_to):
    planned = plan_width(density, width, min_channels=min_channels, round_to=round_to)
    assert min(min_channels, width) <= planned <= width
    assert planned >= math.ceil(density * width - 1e-9)
    assert planned == width or planned == min(min_channels, width) or planned % round_to == 0
    assert plan_width(min(1.0, density + 0.1), width, min_channels=min_channels, round_to=round_to) >= planned


def test_trigger_fires_only_after_patience_epochs_within_tol():
    trigger = ConvergenceTrigger(tol=0.02, patience=2)
    assert trigger.update(_densities({"a": 0.50, "b": 0.30})) is False
    assert trigger.update(_densities({"a": 0.51, "b": 0.30})) is False  # only 2 epochs seen
    assert trigger.update(_densities({"a": 0.515, "b": 0.31})) is True  # spans 0.015 and 0.01 over 3 epochs
    assert trigger.update(_densities({"a": 0.55, "b": 0.31})) is False  # a moved 0.04
    trigger.reset()
    assert trigger.update(_densities({"a": 0.55, "b": 0.31})) is False


def test_trigger_state_round_trips():
    trigger = ConvergenceTrigger(tol=0.05, patience=1)
    trigger.update(_densities({"a": 0.5}))
    clone = ConvergenceTrigger(tol=0.05, patience=1)
    clone.load_state_dict(trigger.state_dict())
    assert clone.update(_densities({"a": 0.52})) is True


@pytest.mark.parametrize("kwargs", [{"tol": 0}, {"patience": 0}])
def test_trigger_rejects_bad_settings(kwargs):
    with pytest.raises(AdpruneError, match="is not valid"):
        ConvergenceTrigger(**kwargs)


def test_removal_change_is_the_share_of_channels_whose_fate_changed():
    widths = {"a": 4, "b": 6}
    before = {"a": {0, 1}, "b": {0, 1, 2}}
    after = {"a": {0, 2}, "b": {0, 1, 2}}  # channel 1 is kept now, channel 2 removed
    assert removal_change(before, after, widths) == 2 / 10
    assert removal_change(before, {}, widths) == 5 / 10
    assert math.isnan(removal_change({}, {}, {}))


def test_ranking_trigger_fires_after_patience_stable_epochs_and_restarts_on_reset():
    widths = {"a": 10}
    trigger = RankingTrigger(tol=0.25, patience=2)
    assert trigger.update(_removal({"a": {0, 1, 2, 3, 4}}, widths)) is False and trigger.last_change is None
    assert trigger.update(_removal({"a": {5, 6, 7, 8, 9}}, widths)) is False  # every channel changed fate
    assert trigger.last_change == 1.0
    assert trigger.update(_removal({"a": {5, 6, 7, 8, 0}}, widths)) is False  # 0.2 < 0.25, but one epoch only
    assert trigger.update(_removal({"a": {5, 6, 7, 8, 0}}, widths)) is True  # 0.2, then 0.0
    assert trigger.update(_removal({"a": {1, 2, 7, 8, 0}}, widths)) is False  # 0.4
    trigger.reset()
    assert trigger.update(_removal({"a": {1, 2, 7, 8, 0}}, widths)) is False and trigger.last_change is None


def test_ranking_trigger_state_round_trips():
    trigger = RankingTrigger(tol=0.1, patience=1)
    trigger.update(_removal({"a": {0, 1}}, {"a": 8}))
    clone = RankingTrigger(tol=0.1, patience=1)
    clone.load_state_dict(trigger.state_dict())
    assert clone.update(_removal({"a": {0, 1}}, {"a": 8})) is True
    assert clone.last_change == 0.0


@given(
    width=st.integers(1, 64),
    before=st.sets(st.integers(0, 63)),
    after=st.sets(st.integers(0, 63)),
)
def test_removal_change_is_a_symmetric_share(width, before, after):
    b = {"a": {c for c in before if c < width}}
    a = {"a": {c for c in after if c < width}}
    change = removal_change(b, a, {"a": width})
    assert 0 <= change <= 1 and change == removal_change(a, b, {"a": width})
    assert (change == 0) == (a == b)


@pytest.mark.parametrize("kwargs", [{"tol": 0}, {"tol": 1.5}, {"patience": 0}])
def test_ranking_trigger_rejects_bad_settings(kwargs):
    with pytest.raises(AdpruneError, match="is not valid"):
        RankingTrigger(**kwargs)


def test_fixed_epochs_fire_at_their_epochs_and_are_exhausted_after_the_last():
    trigger = FixedEpochs([6, 3, 6])
    assert [trigger.update(_densities({}, epoch)) for epoch in range(8)] == [e in (3, 6) for e in range(8)]
    assert [trigger.exhausted(e) for e in (2, 5, 6, 9)] == [False, False, True, True]
    assert FixedEpochs([]).exhausted(0)


def test_a_ranking_trigger_reads_the_removal_only_when_it_updates():
    asked = []
    signal = EpochSignal(0, {"a": 0.5}, {"a": 4}, lambda: asked.append(1) or {"a": [0]})
    ConvergenceTrigger().update(signal)
    FixedEpochs([0]).update(signal)
    assert asked == []
    RankingTrigger().update(signal)
    assert asked == [1]


@pytest.mark.parametrize(
    ("value", "kind"), [("ranking", RankingTrigger), ("density", ConvergenceTrigger), ([2, 4], FixedEpochs)]
)
def test_built_in_triggers_by_name_or_epochs(value, kind):
    assert type(resolve_trigger(value)) is kind


@pytest.mark.parametrize("value", ["sometimes", [1.5], 7, [-1]])
def test_a_trigger_that_cannot_work_is_refused_in_one_line(value):
    with pytest.raises(AdpruneError, match="is not valid: give"):
        resolve_trigger(value)
