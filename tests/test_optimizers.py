"""The run's optimizers: weight decay only on weights, and Adam's decay coupled into the gradient (L2)."""

import pytest
import torch
from torch import nn

from adprune.train.config import TrainConfig
from adprune.train.optimizers import make_optimizer


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
