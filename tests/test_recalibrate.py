"""BatchNorm statistics re-estimated for the network as it computes now: exactly the average over the
given batches, with weights, modes and momenta untouched and the density monitor not counting."""

import json

import torch
from torch import nn

from adprune import ADPruner
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


def test_the_monitor_counts_nothing_while_paused():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(2)
    )
    model(torch.zeros(2, 3, 8, 8))
    pruner = ADPruner(model, torch.zeros(2, 3, 8, 8), prune_at=[])
    with pruner.monitor.paused():
        recalibrate_batchnorm(model, [torch.randn(5, 3, 8, 8)])
    assert pruner.monitor.samples_seen == 0 and pruner.monitor.read() == {}


def test_training_recalibrates_after_a_fade_and_charges_its_forwards(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(out=str(out), model="vgg11", width=0.125, subset=256, epochs=3, batch_size=64,
                         prune_at=[1], fade=1.0, bn_recalibrate=2, progress=False, report=False)  # fmt: skip
    summary = train(config, log=lambda _: None)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["pruned"] for r in lines] == [False, True, False]
    macs_during_fade = lines[1]["macs"]  # the faded network still has every channel: same MACs
    recalibration = 2 * 64 * 2 * macs_during_fade  # two batches of 64, two FLOPs per MAC
    assert summary["train_flops_total"] == sum(r["train_flops"] for r in lines) + recalibration
