"""The self-sizing rule's budget awareness: no prune decided too late to pay off, one prune at the
deadline when the trigger never fired, and nothing on a budget too short for any prune."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adprune import AdpruneError, ADPruner
from adprune.models import build_model
from adprune.prune.deadline import FINAL_SHARE, last_decision_epoch
from adprune.prune.widths import DensityPlan
from adprune.train.config import TrainConfig


@pytest.mark.parametrize(
    ("first", "last", "fade", "expected"),
    [(1, 20, True, 5), (1, 20, False, 6), (1, 8, True, 1), (1, 7, True, 1), (1, 6, True, None),
     (1, 10, True, 2), (0, 19, True, 4), (1, 3, True, None), (1, 1, False, None)],
)  # fmt: skip
def test_the_last_decision_leaves_the_final_network_its_share_of_the_budget(first, last, fade, expected):
    assert last_decision_epoch(first, last, fade) == expected


@given(st.integers(0, 3), st.integers(1, 400), st.booleans())
def test_a_decision_at_the_deadline_leaves_enough_epochs_and_one_later_would_not(first, epochs, fade):
    last = first + epochs - 1
    decision = last_decision_epoch(first, last, fade)
    needed = math.ceil(FINAL_SHARE * epochs)

    def left_after(d):
        return last - (d + 1 if fade else d)

    if decision is None:
        assert left_after(first) < needed
    else:
        assert decision >= first and left_after(decision) >= needed > left_after(decision + 1)


class Never:
    """A trigger that never fires."""

    def update(self, signal):
        return False

    def reset(self):
        pass

    def exhausted(self, epoch):
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Always(Never):
    def update(self, signal):
        return True


def _epochs(pruner, model, epochs):
    for epoch in range(1, epochs + 1):
        model.train()
        model(torch.randn(4, 3, 32, 32)).square().mean().backward()
        pruner.epoch_end(epoch, last=epoch == epochs)


def _vgg():
    torch.manual_seed(0)
    return build_model("vgg11", in_channels=3, num_classes=10, width=0.25)


def test_a_trigger_that_never_fires_still_sizes_the_network_once_at_the_deadline():
    model = _vgg()
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), trigger=Never(), epochs=8,
                      widths=DensityPlan(min_channels=1))  # fmt: skip
    _epochs(pruner, model, 8)
    assert [(e.decided, e.epoch) for e in pruner.events] == [(1, 2)]
    assert [line.epoch for line in pruner.ledger if line.decided] == [1]


def test_no_prune_is_decided_after_the_deadline():
    model = _vgg()
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), trigger=Always(), epochs=10, fade=0,
                      widths=DensityPlan(min_channels=1), min_reduction=0.0)  # fmt: skip
    _epochs(pruner, model, 10)
    assert [e.epoch for e in pruner.events] == [1, 2, 3]  # the deadline: 7 epochs of 10 after epoch 3
    assert pruner.finished


def test_a_budget_too_short_for_any_prune_trains_at_full_width():
    model = _vgg()
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), trigger=Always(), epochs=3)
    _epochs(pruner, model, 3)
    assert pruner.finished and not pruner.events


def test_an_explicit_prune_count_or_list_of_epochs_is_not_sized():
    for options in ({"max_prunes": 5, "trigger": Always()}, {"trigger": [1, 5]}):
        model = _vgg()
        pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), epochs=10, fade=0, min_reduction=0.0,
                          widths=DensityPlan(min_channels=1), **options)  # fmt: skip
        _epochs(pruner, model, 6)
        assert pruner.limits.deadline is None and pruner.events[-1].epoch == 5


def test_without_its_budget_the_pruner_prunes_at_most_twice():
    model = _vgg()
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), trigger=Always(), fade=0, min_reduction=0.0,
                      widths=DensityPlan(min_channels=1))  # fmt: skip
    _epochs(pruner, model, 6)
    assert [e.epoch for e in pruner.events] == [1, 2] and pruner.limits.max_prunes == 2


@pytest.mark.parametrize(
    ("options", "training_images", "validation", "budget"),
    [
        ({}, 15_000, 1_500, 1.0),
        ({}, 100_000, 5_000, 1.0),
        ({}, 999, 0, None),
        ({}, 1_000, 100, 1.0),
        ({"max_drop": 0.5}, 3_000, 300, 0.5),
        ({"val_split": 0}, 15_000, 0, None),
        ({"max_prunes": 2}, 15_000, 0, None),
        ({"prune_at": [3]}, 15_000, 0, None),
        ({"prune": "none"}, 15_000, 0, None),
        ({"max_prunes": 2, "val_split": 700, "max_drop": 2.0}, 15_000, 700, 2.0),
    ],
)
def test_the_self_sizing_defaults_hold_out_a_validation_split_and_guard_a_budget(
    options, training_images, validation, budget
):
    config = TrainConfig(out="run", **options)
    config.validate()
    assert config.self_sizing == options.keys().isdisjoint({"max_prunes", "prune_at", "prune"})
    assert config.validation_images(training_images) == validation
    assert config.accuracy_budget(validation) == budget


def test_an_accuracy_budget_without_validation_images_is_refused_in_one_line():
    config = TrainConfig(out="run", max_drop=1.0)
    config.validate()  # self-sizing would hold a split out of a large enough training set
    with pytest.raises(AdpruneError, match=r"^--max-drop compares validation accuracy.*give --val-split N$"):
        config.accuracy_budget(0)
