"""The pruner's contract with its users: what would go wrong silently gets an error or a warning that
says what to do, and what users commonly do (calling a submodule, returning a dict) just works."""

import re

import pytest
import torch
import torch.distributed as dist
from torch import nn

from adprune import AdpruneError, ADPruner
from adprune.models import build_model
from adprune.prune.triggers import ConvergenceTrigger, RankingTrigger
from adprune.prune.widths import DensityPlan, ParameterTarget, WidthSchedule

EXAMPLE = torch.zeros(2, 3, 32, 32)


def _vgg(width: float = 0.125) -> nn.Module:
    return build_model("vgg11", in_channels=3, num_classes=10, width=width)


def _half(widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per-channel densities with mean 1/2: each group keeps its second half."""
    return {n: (torch.arange(w, dtype=torch.float64) >= w // 2).double() for n, w in widths.items()}


def test_a_missing_optimizer_gets_a_warning_and_old_parameters_keep_their_weights():
    model = _vgg()
    with pytest.warns(UserWarning, match="ADPruner has no optimizer.*Pass optimizer="):
        pruner = ADPruner(model, EXAMPLE, trigger=[])
    stale_optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # what the warning is about
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    held = dict(model.named_parameters())
    pruner.prune(0, _half(pruner.widths))
    replaced = {name for name, p in model.named_parameters() if p is not held[name]}
    assert replaced and len(replaced) < len(held)
    for name in replaced:  # what the stale optimizer still holds: the weights as they were, not scratch
        assert held[name].dtype == torch.float32 and torch.equal(held[name].detach(), before[name])
    held_ids = {id(p) for group in stale_optimizer.param_groups for p in group["params"]}
    assert not held_ids >= {id(p) for p in model.parameters()}


def test_no_warning_with_an_optimizer(recwarn):
    model = _vgg()
    ADPruner(model, EXAMPLE, torch.optim.SGD(model.parameters(), lr=0.1), trigger=[])
    assert not [w for w in recwarn if "optimizer" in str(w.message)]


class Wrapper(nn.Module):
    """A LightningModule-like wrapper whose training loop calls `wrapper.net(x)`, not `wrapper(x)`."""

    def __init__(self):
        super().__init__()
        self.net = _vgg()

    def forward(self, x):
        return self.net(x)


def test_a_loop_that_calls_a_submodule_counts_its_samples_and_flops():
    wrapper = Wrapper()
    optimizer = torch.optim.SGD(wrapper.parameters(), lr=0.01)
    pruner = ADPruner(wrapper, EXAMPLE, optimizer, trigger=[])
    wrapper.train()
    for batch in (5, 3):
        wrapper.net(torch.randn(batch, 3, 32, 32)).square().mean().backward()
    pruner.epoch_end(0)
    line = pruner.ledger[-1]
    assert line.samples == 8 and line.train_flops == 8 * pruner.model_costs()[1] > 0


class DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _vgg()

    def forward(self, x):
        logits = self.net(x)
        return {"logits": logits, "aux": (logits.argmax(1), logits.softmax(1))}


def test_dict_and_tuple_outputs_get_the_same_ledger_as_a_tensor_output():
    plain, wrapped = _vgg(), DictOutput()
    wrapped.net.load_state_dict(plain.state_dict())
    costs = []
    for model in (plain, wrapped):
        pruner = ADPruner(model, EXAMPLE, torch.optim.SGD(model.parameters(), lr=0.01), trigger=[])
        model.train()
        model(torch.randn(4, 3, 32, 32))
        pruner.epoch_end(0)
        costs.append((pruner.ledger[-1].macs, pruner.ledger[-1].samples))
    assert costs[0] == costs[1] and costs[0][0] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_reduction": -3}, "min_reduction=-3 is not valid: give a number in [0, 1]"),
        ({"trigger": [-5]}, "epochs=[-5] is not valid: give a list of epochs (whole numbers >= 0)"),
        ({"trigger": "sometimes"}, "trigger='sometimes' is not valid: give one of ranking, density, a list"),
        ({"mode": "bogus"}, "mode='bogus' is not valid: give one of inherit, reinit"),
        ({"max_prunes": True}, "max_prunes=True is not valid: give a whole number at least 0"),
        ({"bn_recalibrate": 2.5}, "bn_recalibrate=2.5 is not valid: give a whole number at least 0"),
        ({"fade": 2}, "fade=2 is not valid: give a number in [0, 1]"),
        ({"density_every": 0}, "density_every=0 is not valid"),
        ({"widths": "uniform"}, "widths='uniform' is not valid: give 'density' or a width policy"),
        (
            {"importance": "taylor"},
            "importance='taylor' is not valid: give one of density, entropy, l1, bn_scale",
        ),
        ({"init": 3}, "init=3 is not valid"),
        ({"check": "yes"}, "check='yes' is not valid: give True or False"),
        ({"ignore": "features.0"}, "ignore='features.0' is not valid: give a list"),
        ({"ignore": ["features.99"]}, "ignore names 'features.99', which is not a module"),
        ({"widths": WidthSchedule({1: {}}), "trigger": [1]}, "a WidthSchedule prunes after its own epochs"),
    ],
)
def test_every_option_is_checked_at_construction(options, message):
    with pytest.raises(AdpruneError, match=re.escape(message)):
        ADPruner(_vgg(), EXAMPLE, **options)


def test_the_lightning_callback_checks_its_options_at_construction():
    pytest.importorskip("lightning")
    from adprune.lightning import ADPruneCallback

    with pytest.raises(AdpruneError, match="mode='bogus' is not valid"):
        ADPruneCallback(trigger=RankingTrigger(tol=0.1), mode="bogus")
    with pytest.raises(AdpruneError, match="trigger='sometimes' is not valid"):
        ADPruneCallback(trigger="sometimes")
    with pytest.raises(AdpruneError, match="widths=3 is not valid"):
        ADPruneCallback(widths=3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RankingTrigger(tol=-1), "tol=-1 is not valid: give a number in (0, 1]"),
        (
            lambda: ConvergenceTrigger(patience=0),
            "patience=0 is not valid: give a whole number in [1, 100,000]",
        ),
        (lambda: DensityPlan(round_to=2.5), "round_to=2.5 is not valid: give a whole number at least 1"),
        (lambda: DensityPlan(min_channels=0), "min_channels=0 is not valid"),
        (lambda: ParameterTarget(0), "target_params=0 is not valid"),
        (lambda: WidthSchedule([1, 2]), "schedule=[1, 2] is not valid"),
    ],
)
def test_every_policy_checks_its_settings_when_built(build, message):
    with pytest.raises(AdpruneError, match=re.escape(message)):
        build()


def test_reinit_initialises_like_the_models_constructor():
    model = _vgg(0.5)
    pruner = ADPruner(model, EXAMPLE, torch.optim.SGD(model.parameters(), lr=0.1), trigger=[], mode="reinit")
    pruner.prune(0, _half(pruner.widths))
    classifier = model.classifier.weight
    assert (
        0.008 < float(classifier.detach().std()) < 0.012
    )  # VGG's own init: normal(0, 0.01), not PyTorch's default
    conv = model.features[4]  # kaiming normal, fan out, at the new width
    expected = (2 / (conv.out_channels * 9)) ** 0.5
    assert 0.9 * expected < float(conv.weight.detach().std()) < 1.1 * expected


def test_reinit_takes_a_given_initialiser():
    model = _vgg()
    seen = []
    pruner = ADPruner(model, EXAMPLE, trigger=[], mode="reinit", init=seen.append)
    pruner.prune(0, _half(pruner.widths))
    assert seen == [model]


def test_density_counts_are_summed_over_the_given_process_group(tmp_path, monkeypatch):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        group = dist.new_group([0])
        seen = []
        reduce = dist.all_reduce
        monkeypatch.setattr(dist, "all_reduce", lambda t, group=None, **kw: seen.append(group) or reduce(t))
        model = _vgg()
        pruner = ADPruner(model, EXAMPLE, trigger=[], process_group=group)
        model.train()
        model(torch.randn(2, 3, 32, 32))
        pruner.epoch_end(0)
        assert seen and all(g is group for g in seen)
    finally:
        dist.destroy_process_group()
