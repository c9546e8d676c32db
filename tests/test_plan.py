"""Width plans and the convergence trigger give exactly the widths and decisions they promise."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adprune.prune.plan import ConvergenceTrigger, plan_width, plan_widths


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
    assert trigger.update({"a": 0.50, "b": 0.30}) is False
    assert trigger.update({"a": 0.51, "b": 0.30}) is False  # only 2 epochs seen
    assert trigger.update({"a": 0.515, "b": 0.31}) is True  # spans 0.015 and 0.01 over 3 epochs
    assert trigger.update({"a": 0.55, "b": 0.31}) is False  # a moved 0.04
    trigger.reset()
    assert trigger.update({"a": 0.55, "b": 0.31}) is False


def test_trigger_state_round_trips():
    trigger = ConvergenceTrigger(tol=0.05, patience=1)
    trigger.update({"a": 0.5})
    clone = ConvergenceTrigger(tol=0.05, patience=1)
    clone.load_state_dict(trigger.state_dict())
    assert clone.update({"a": 0.52}) is True


@pytest.mark.parametrize("kwargs", [{"tol": 0}, {"patience": 0}])
def test_trigger_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        ConvergenceTrigger(**kwargs)
