"""The run's optimizers: weight decay only on weights, Adam's decay coupled into the gradient (L2), and the
learning-rate ramp after a prune."""

import pytest
import torch
from torch import nn

from adprune.train.config import TrainConfig
from adprune.train.optimizers import LearningRateRamp, make_optimizer


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                            ("adamw", torch.optim.AdamW)])  # fmt: skip
def test_weight_decay_goes_to_weights_only(name, kind):
    model = _model()
    optimizer = make_optimizer(TrainConfig(out="", optimizer=name, weight_decay=0.01, lr=0.1), model)
    assert type(optimizer) is kind
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters() if p.dim() > 1}


def test_adam_couples_weight_decay_into_the_gradient():
    # With no loss gradient, Adam's first step sees grad = wd * w and moves every weight by lr * sign(w);
    # AdamW's decoupled decay moves it by lr * wd * w instead.
    lr, wd = 0.01, 0.1
    moved = {}
    for name in ("adam", "adamw"):
        model = _model()
        weight = model[0].weight
        before = weight.detach().clone()
        optimizer = make_optimizer(TrainConfig(out="", optimizer=name, weight_decay=wd, lr=lr), model)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        moved[name] = before - weight.detach()
        expected = lr * torch.sign(before) if name == "adam" else lr * wd * before
        torch.testing.assert_close(moved[name], expected, rtol=1e-4, atol=1e-6)


def test_learning_rate_ramp_rises_linearly_then_restores_the_schedule():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD([{"params": params, "lr": 0.4}, {"params": [], "lr": 0.2}])
    ramp = LearningRateRamp(optimizer, steps=3)
    seen = []
    for step in range(1, 6):
        ramp.before_step(step)
        seen.append([g["lr"] for g in optimizer.param_groups])
    assert seen == [
        [0.1, 0.05],
        [0.2, 0.1],
        [0.30000000000000004, 0.15000000000000002],
        [0.4, 0.2],
        [0.4, 0.2],
    ]
    ramp.restore()
    assert [g["lr"] for g in optimizer.param_groups] == [0.4, 0.2]
    ramp = LearningRateRamp(optimizer, steps=0)
    ramp.before_step(1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.4, 0.2]


def test_the_channels_last_layout_moves_weights_and_momenta_but_keeps_the_parameter_objects():
    from adprune.train.hardware import Hardware, apply_layout, resolve

    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 3, 3)).sum().backward()
    optimizer.step()
    params = list(model.parameters())
    apply_layout(model, optimizer, Hardware(8, True, False))
    conv = model[0].weight
    assert list(model.parameters()) == params and conv.is_contiguous(memory_format=torch.channels_last)
    assert optimizer.state[conv]["momentum_buffer"].is_contiguous(memory_format=torch.channels_last)
    assert resolve(None, "auto", False, torch.device("cpu")) == Hardware(8, True, False)
    assert resolve(3, "contiguous", True, torch.device("cuda", 0)) == Hardware(3, False, True)
