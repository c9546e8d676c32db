"""ADPruner end to end on models: exact planned widths, triggers, ledger, and any architecture runs after."""

import pytest
import torch
from torch import nn

from adprune import AdpruneError, ADPruner
from adprune.models import build_model
from adprune.prune.cost import training_flops_per_sample
from adprune.prune.triggers import ConvergenceTrigger, RankingTrigger
from adprune.prune.widths import DensityPlan


def _set_live_positions(model: nn.Module, live: dict[str, list[int]], members: dict[str, tuple[str, ...]]):
    """Channels at `live[group]` always fire (BN outputs +1), the rest never (BN outputs -10)."""
    with torch.no_grad():
        for group, positions in live.items():
            for name in members[group]:
                module = model.get_submodule(name)
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.zero_()
                    module.bias.fill_(-10.0)
                    module.bias[positions] = 1.0


def _set_live_channels(model: nn.Module, live: dict[str, int], members: dict[str, tuple[str, ...]]) -> None:
    """The first `live[group]` channels of each group always fire, the rest never."""
    _set_live_positions(model, {group: list(range(count)) for group, count in live.items()}, members)


def _train_forward(model, shape=(4, 3, 32, 32)):
    model.train()
    model(torch.randn(*shape)).square().mean().backward()


def test_prune_at_gives_exactly_the_planned_widths_and_keeps_outputs():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.25)
    pruner = ADPruner(
        model, torch.zeros(2, 3, 32, 32), trigger=[1], widths=DensityPlan(min_channels=1), fade=0
    )
    members = {g.name: g.members for g in pruner.groups}
    live = {name: max(1, width // (i + 2)) for i, (name, width) in enumerate(pruner.widths.items())}
    _set_live_channels(model, live, members)
    _train_forward(model)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    pruner.epoch_end(1)
    assert pruner.widths == live
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5, rtol=0)
    line = pruner.ledger[-1]
    assert line.pruned and line.params_after < line.params and line.samples == 4
    assert line.train_flops == 4 * (line.train_flops // 4) > 0
    assert pruner.events[0].widths_after == live


def test_ranking_trigger_waits_until_the_channels_to_remove_stop_changing():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(
        model,
        torch.zeros(2, 3, 32, 32),
        trigger=RankingTrigger(tol=0.1, patience=1),
        widths=DensityPlan(min_channels=1),
        fade=0,
    )
    members = {g.name: g.members for g in pruner.groups}
    first = {n: list(range(w // 2)) for n, w in pruner.widths.items()}  # the first half fires ...
    second = {n: list(range(w // 2, w)) for n, w in pruner.widths.items()}  # ... then the other half
    for epoch, live in enumerate((first, second, second)):
        _set_live_positions(model, live, members)
        _train_forward(model)
        pruner.epoch_end(epoch)
    assert [line.mask_change for line in pruner.ledger] == [None, 1.0, 0.0]
    assert [e.epoch for e in pruner.events] == [2]  # once the half to remove held still for an epoch
    assert pruner.events[0].widths_after == {n: w // 2 for n, w in pruner.events[0].widths_before.items()}


def test_density_trigger_prunes_after_patience_and_never_on_the_last_epoch():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(
        model,
        torch.zeros(2, 3, 32, 32),
        trigger=ConvergenceTrigger(tol=0.01, patience=2),
        widths=DensityPlan(min_channels=1),
        fade=0,
    )
    members = {g.name: g.members for g in pruner.groups}
    _set_live_channels(model, {n: w // 2 for n, w in pruner.widths.items()}, members)
    for epoch in range(3):
        _train_forward(model)
        pruner.epoch_end(epoch, last=epoch == 2)
    assert not pruner.events  # converged at epoch 2, but it was the last one
    _train_forward(model)
    pruner.epoch_end(3)
    assert [e.epoch for e in pruner.events] == [3]


def test_ledger_accumulates_training_flops():
    model = build_model("resnet18", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), max_prunes=0)
    for epoch in range(2):
        _train_forward(model, (3, 3, 32, 32))
        _train_forward(model, (5, 3, 32, 32))
        pruner.epoch_end(epoch)
    first, second = pruner.ledger
    assert first.samples == second.samples == 8
    assert second.train_flops_total == first.train_flops + second.train_flops
    per_sample = training_flops_per_sample(model, torch.zeros(2, 3, 32, 32))
    assert first.train_flops == 8 * per_sample
    # forward 2 FLOPs per MAC, weight gradients as much, input gradients too except for the first layer
    assert 4 * first.macs < per_sample <= 6 * first.macs
    assert not pruner.events


def test_epoch_end_without_training_forward_is_an_error():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32))
    model.eval()
    model(torch.zeros(2, 3, 32, 32))
    with pytest.raises(AdpruneError, match="no training forward"):
        pruner.epoch_end(0)


@pytest.mark.parametrize(
    ("name", "in_channels", "size", "width"),
    [
        ("vgg19", 3, 32, 0.25),
        ("resnet18", 3, 32, 0.25),
        ("tv:resnet18", 3, 32, 1.0),
        ("tv:mobilenet_v2", 1, 32, 1.0),
    ],
)
def test_architectures_prune_and_train_on(name, in_channels, size, width):
    model = build_model(name, in_channels=in_channels, num_classes=7, image_size=size, width=width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = ADPruner(model, torch.zeros(2, in_channels, size, size), optimizer, trigger=[0], fade=0)
    shape = (4, in_channels, size, size)
    _train_forward(model, shape)
    optimizer.step()
    params = sum(p.numel() for p in model.parameters())
    pruner.epoch_end(0)
    assert sum(p.numel() for p in model.parameters()) < params
    assert any(pruner.widths[n] < w for n, w in pruner.events[0].widths_before.items())
    optimizer.zero_grad()
    out = model(torch.randn(*shape))
    assert out.shape == (4, 7)
    out.square().mean().backward()
    optimizer.step()


def test_prune_now_uses_the_densities_the_last_epoch_end_read(monkeypatch):
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), trigger=[], widths=DensityPlan(min_channels=1))
    members = {g.name: g.members for g in pruner.groups}
    live = {n: max(1, w // 4) for n, w in pruner.widths.items()}
    _set_live_channels(model, live, members)
    _train_forward(model)
    pruner.epoch_end(0)
    assert not pruner.events and pruner.planned_widths() == live
    clock = iter([10.0, 12.5])  # the prune's start and end, as time.perf_counter reads them
    monkeypatch.setattr("adprune.prune.pruner.time.perf_counter", lambda: next(clock))
    event = pruner.prune(7)
    assert event is pruner.events[0] and event.epoch == 7 and event.seconds == 2.5
    assert pruner.widths == event.widths_after == live


class EvalOnlyBranch(nn.Module):
    """A branch added only in evaluation (and traced, since tracing runs in eval mode): no training
    forward ever reaches its channel group."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        self.aux = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.aux_fc = nn.Linear(4, 10)

    def forward(self, x):
        out = self.head(self.body(x))
        return out if self.training else out + self.aux_fc(self.aux(x))


@pytest.mark.parametrize("fade", [0.0, 1.0])
def test_a_group_no_training_forward_reached_keeps_its_width_and_is_named(fade):
    model = EvalOnlyBranch()
    plan = DensityPlan(min_channels=1)
    pruner = ADPruner(model, torch.zeros(2, 3, 8, 8), trigger=[0], widths=plan, fade=fade)
    assert pruner.widths == {"body.0": 8, "aux.0": 4}
    _set_live_channels(model, {"body.0": 4}, {g.name: g.members for g in pruner.groups})
    with pytest.warns(UserWarning, match=r"no training forward reached channel group\(s\) aux.0"):
        for epoch in range(2):
            _train_forward(model, (4, 3, 8, 8))
            pruner.epoch_end(epoch)
    (event,) = pruner.events
    assert event.widths_after == {"body.0": 4, "aux.0": 4} and event.uncounted == ["aux.0"]
    model.eval()
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


class NoActivation(nn.Module):
    """Every channel group is read linearly (no activation after it): nothing can be pruned."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def test_a_model_with_nothing_to_prune_is_said_at_construction_and_trains_unpruned():
    model = NoActivation()
    with pytest.warns(
        UserWarning, match=r"found no channel group it can prune in NoActivation.*conv: .*linear"
    ):
        pruner = ADPruner(model, torch.zeros(2, 3, 8, 8), trigger=[0])
    assert pruner.widths == {} and "conv" in pruner.skipped
    _train_forward(model, (4, 3, 8, 8))
    assert pruner.epoch_end(0) is None  # counted its samples: no false "no training forward" error
    assert pruner.ledger[-1].samples == 4 and not pruner.events


def test_a_user_written_importance_decides_which_channels_go():
    calls = []

    def keep_the_last_channels(group, density, graph):
        calls.append((group.name, tuple(density.shape), graph.model is model))
        return torch.arange(group.width, dtype=torch.float64)  # higher stays: the last channels

    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(
        model, torch.zeros(2, 3, 32, 32), trigger=[0], widths=DensityPlan(min_channels=1),
        importance=keep_the_last_channels, fade=0,
    )  # fmt: skip
    first = pruner.groups[0]
    conv = model.get_submodule(first.name)
    with torch.no_grad():
        model.get_submodule(first.members[1]).bias[: first.width // 2] = -10.0  # a density of 1/2 or less
    weights = conv.weight.detach().clone()
    _train_forward(model)
    event = pruner.epoch_end(0)
    width = event.widths_after[first.name]
    assert width < first.width
    assert torch.equal(model.get_submodule(first.name).weight.detach(), weights[first.width - width :])
    assert calls[0] == (first.name, (first.width,), True) and len(calls) == len(event.widths_before)


def test_an_importance_that_gives_the_wrong_number_of_scores_is_refused_naming_it():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(
        model, torch.zeros(2, 3, 32, 32), trigger=[0], importance=lambda g, d, graph: d[:2], fade=0
    )
    _train_forward(model)
    with pytest.raises(
        AdpruneError, match=r"importance <lambda> gave 2 scores for group 'features.0' of \d+"
    ):
        pruner.epoch_end(0)
