"""The validation split is read with BatchNorm statistics re-estimated for the weights as they are
(precise BatchNorm): the accuracy equals that of a copy recalibrated by hand, the model's running
statistics come back bit for bit, and the density monitor counts none of the re-estimate's forwards."""

import copy

import torch
from torch import nn

from adprune.prune.pruner import ADPruner
from adprune.prune.recalibrate import batchnorm_statistics_for, recalibrate_batchnorm
from adprune.train.data import BatchLoader
from adprune.train.validation import PRECISE_BN_BATCHES, evaluate, validate


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip


def _loader(n: int, seed: int, **kwargs) -> BatchLoader:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return BatchLoader(images, labels, mean=[0.5], std=[0.25], **kwargs)


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def test_statistics_are_re_estimated_inside_the_block_and_restored_bit_for_bit_after_it():
    model = _model()
    before = _buffers(model)
    batch = torch.randn(16, 1, 8, 8) * 3 + 2
    with batchnorm_statistics_for(model, [batch]) as samples:
        assert samples == 16
        assert torch.allclose(model[1].running_mean, model[0](batch).mean((0, 2, 3)), atol=1e-6)
    after = _buffers(model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_validation_reads_precise_statistics_and_the_monitor_counts_none_of_their_forwards():
    model = _model()
    pruner = ADPruner(model, torch.zeros(2, 1, 8, 8), fade=0)
    train_loader = _loader(64 * (PRECISE_BN_BATCHES + 5), 1, batch_size=64, train=True, drop_last=True)
    val_loader = _loader(200, 2, batch_size=50)
    model.train()
    model(torch.randn(4, 1, 8, 8))
    counted, before = pruner.monitor.samples_seen, _buffers(model)
    densities = pruner.monitor.read()

    loss, acc = validate(model, val_loader, train_loader, pruner.monitor, fading=False)

    hand = copy.deepcopy(model)
    batches = [images for images, _ in list(train_loader)[:PRECISE_BN_BATCHES]]
    assert recalibrate_batchnorm(hand, batches) == 64 * PRECISE_BN_BATCHES
    assert (loss, acc) == evaluate(hand, val_loader, torch.device("cpu"))
    assert (loss, acc) != evaluate(model, val_loader, torch.device("cpu"))  # the stale statistics differ
    assert pruner.monitor.samples_seen == counted
    assert all(torch.equal(pruner.monitor.read()[k], densities[k]) for k in densities)
    assert all(torch.equal(v, before[k]) for k, v in _buffers(model).items())


def test_while_channels_fade_out_the_fade_s_own_statistics_are_read():
    model = _model()
    pruner = ADPruner(model, torch.zeros(2, 1, 8, 8), fade=0)
    train_loader = _loader(128, 1, batch_size=64, train=True, drop_last=True)
    val_loader = _loader(100, 2, batch_size=50)
    plain = evaluate(model, val_loader, torch.device("cpu"))
    assert validate(model, val_loader, train_loader, pruner.monitor, fading=True) == plain
