"""Fading channels out before removing them: at factor 0 the model computes what the pruned model computes,
the pruner decides at one epoch end and cuts at the next, and the cut then changes nothing."""

import pytest
import torch

from adprune import AdpruneError, ADPruner
from adprune.models import build_model
from adprune.prune.fade import ChannelFade
from adprune.prune.groups import find_groups
from adprune.prune.surgery import prune_groups
from adprune.prune.tp_compat import build_graph
from adprune.prune.widths import DensityPlan

EXAMPLE = torch.zeros(2, 3, 32, 32)


def _train_steps(model, steps: int, batch: int = 4) -> None:
    model.train()
    for _ in range(steps):
        model(torch.randn(batch, 3, 32, 32)).square().mean().backward()


def _groups(model):
    return [g for g in find_groups(build_graph(model, EXAMPLE)) if g.skip_reason is None]


def test_fade_ramps_linearly_to_exactly_0_at_the_epochs_last_batch_and_eval_does_not_move_it():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    groups = _groups(model)
    fade = ChannelFade(model, groups, {groups[0].name: [0]}, epoch_samples=16)
    factors = []
    for _ in range(5):
        _train_steps(model, 1, batch=4)
        factors.append(fade.factor)
    assert factors == [0.75, 0.5, 0.25, 0.0, 0.0]
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    assert fade.samples_seen == 20 and fade.factor == 0.0 and not fade.recalibrating


def test_the_last_batches_of_a_fade_re_estimate_batchnorm_once_the_channels_are_off():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    groups = _groups(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # 8 batches of 4: the last 2 re-estimate, the ramp reaches 0 over the 6 before them (fade 1)
    fade = ChannelFade(model, groups, {groups[0].name: [0]}, epoch_samples=32, fade=1.0, recalibrate=2)
    seen = []
    for _ in range(8):
        _train_steps(model, 1, batch=4)
        seen.append((fade.factor, fade.recalibrating))
    ramp = [1 - 4 * (i + 1) / 24 for i in range(5)] + [0.0] * 3
    assert [f for f, _ in seen] == pytest.approx(ramp, abs=1e-12)
    assert [r for _, r in seen] == [False] * 6 + [True, True]
    assert all(n.momentum is None and int(n.num_batches_tracked) == 2 for n in norms)
    fade.detach()
    assert all(n.momentum == 0.1 for n in norms)
    short = ChannelFade(model, groups, {groups[0].name: [0]}, epoch_samples=8, recalibrate=10)
    _train_steps(model, 1, batch=4)  # 10 batches asked, half of the 2-batch epoch given: 1
    assert (short.factor, short.recalibrating) == (0.0, False)
    _train_steps(model, 1, batch=4)
    assert short.recalibrating
    short.detach()


@pytest.mark.parametrize(("name", "width"), [("vgg11", 0.25), ("resnet18", 0.25), ("tv:mobilenet_v2", 1.0)])
def test_a_faded_out_model_computes_exactly_what_the_pruned_model_computes(name, width):
    model = build_model(name, in_channels=3, num_classes=10, image_size=32, width=width)
    _train_steps(model, 2)  # BatchNorm statistics that are not the identity
    groups = [g for g in find_groups(build_graph(model, EXAMPLE)) if g.skip_reason is None and g.blocks == 1]
    remove = {g.name: list(range(1, g.width, 2)) for g in groups}
    fade = ChannelFade(model, groups, remove, epoch_samples=1)
    _train_steps(model, 1)  # the factor is 0 from the first training forward on ...
    _train_steps(model, 1)
    assert fade.factor == 0.0
    model.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        faded = model(x)
    fade.detach()
    graph = build_graph(model, EXAMPLE)
    prune_groups(model, graph, find_groups(graph), remove)
    with torch.no_grad():
        assert torch.allclose(model(x), faded, atol=1e-5, rtol=0)


def test_the_pruner_decides_at_one_epoch_end_and_cuts_at_the_next_without_changing_outputs():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.25)
    pruner = ADPruner(model, EXAMPLE, trigger=[1], widths=DensityPlan(min_channels=1), fade=0.5)
    widths = pruner.widths
    _train_steps(model, 4)  # 16 samples in epoch 1
    pruner.epoch_end(1)
    assert pruner.ledger[-1].decided and not pruner.ledger[-1].pruned
    assert pruner.widths == widths and pruner.pending.decided == 1 and pruner.pending.epoch_samples == 16
    # 12 samples in epoch 2: the last 8 of an expected 16 re-estimate BatchNorm (at most half), the factor
    # falls over half of the 8 before them and is 0 after 4
    _train_steps(model, 3)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    pruner.epoch_end(2)
    line, event = pruner.ledger[-1], pruner.events[-1]
    assert line.pruned and not line.decided and pruner.pending is None
    assert (event.epoch, event.decided) == (2, 1)
    assert all(pruner.widths[n] < w for n, w in widths.items() if w > 1)
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5, rtol=0)


def test_a_fading_prune_is_completed_on_the_last_epoch_and_blocks_an_explicit_prune():
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(model, EXAMPLE, trigger=[1], widths=DensityPlan(min_channels=1), fade=1.0)
    _train_steps(model, 2)
    pruner.epoch_end(1)
    with pytest.raises(AdpruneError, match="still fading"):
        pruner.prune(1)
    _train_steps(model, 2)
    pruner.epoch_end(2, last=True)
    assert [e.epoch for e in pruner.events] == [2]


def test_fade_is_a_share_of_an_epoch():
    with pytest.raises(AdpruneError, match=r"fade=1.5 is not valid: give a number in \[0, 1\]"):
        ADPruner(build_model("vgg11", in_channels=3, num_classes=10, width=0.125), EXAMPLE, fade=1.5)
