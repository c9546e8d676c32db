"""BatchNorm statistics re-estimated for the network as it computes now: exactly the average over the
given batches, with weights, modes and momenta untouched; and the pruner's own re-estimation at the
end of every fade, in any loop."""

import copy
import json

import torch
from torch import nn

from adprune import ADPruner
from adprune.models import build_model
from adprune.prune.recalibrate import recalibrate_batchnorm
from adprune.train.config import TrainConfig
from adprune.train.loop import train


def test_running_statistics_become_the_average_over_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, momentum=0.3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)
    )
    model(torch.randn(2, 2, 6, 6))
    model.eval()
    weights = {
        k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    batches = [torch.randn(4, 2, 6, 6) + i for i in range(3)]
    with torch.no_grad():
        outs = [model[0](b) for b in batches]
    assert recalibrate_batchnorm(model, batches) == 12
    norm = model[1]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    variances = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs]).mean(0)
    assert torch.allclose(norm.running_mean, means, atol=1e-6) and torch.allclose(
        norm.running_var, variances, atol=1e-5
    )
    assert norm.momentum == 0.3 and not model.training and not norm.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def _plain_loop_epoch(model, optimizer, batches):
    model.train()
    for images in batches:
        optimizer.zero_grad()
        model(images).square().mean().backward()
        optimizer.step()


def test_the_readme_loop_re_estimates_batchnorm_on_the_last_batches_of_a_fade():
    """The three-line loop gets the method's re-estimation with no extra code: after the cut every
    BatchNorm holds the plain average over the fade's last `bn_recalibrate` training batches, which is
    what `recalibrate_batchnorm` on those batches gives for the pruned network. With lr=0 the weights
    do not move during those batches, so the two agree to float rounding (1e-5); with training they
    differ by what the weights moved in those steps."""
    torch.manual_seed(0)
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), optimizer, trigger=[1], fade=1.0, bn_recalibrate=2)
    epoch_batches = [[torch.randn(8, 3, 32, 32) for _ in range(4)] for _ in range(2)]
    _plain_loop_epoch(model, optimizer, epoch_batches[0])
    assert pruner.epoch_end(1) is None and pruner.ledger[-1].decided
    _plain_loop_epoch(model, optimizer, epoch_batches[1])
    event = pruner.epoch_end(2)
    assert event is not None and event.widths_after != event.widths_before
    reference = copy.deepcopy(model)
    recalibrate_batchnorm(reference, epoch_batches[1][2:])  # the last 2 of the fade epoch's 4 batches
    pairs = zip(model.modules(), reference.modules(), strict=True)
    for norm, expected in ((m, r) for m, r in pairs if isinstance(m, nn.BatchNorm2d)):
        assert norm.momentum == 0.1 and int(norm.num_batches_tracked) == 2
        torch.testing.assert_close(norm.running_mean, expected.running_mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(norm.running_var, expected.running_var, atol=1e-5, rtol=1e-5)


def test_adprune_train_re_estimates_inside_training_and_charges_no_extra_forwards(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(out=str(out), model="vgg11", width=0.125, subset=256, epochs=3, batch_size=64,
                         prune_at=[1], fade=1.0, bn_recalibrate=2, progress=False, report=False)  # fmt: skip
    summary = train(config, log=lambda _: None)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["pruned"] for r in lines] == [False, True, False]
    assert summary["train_flops_total"] == sum(r["train_flops"] for r in lines)
