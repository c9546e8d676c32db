"""Evaluation, and the validation accuracy that decisions during training read.

A network's BatchNorm running statistics trail its weights: at a high learning rate they average the
last few dozen batches of moving weights, and right after a prune they describe a network that no
longer exists. Evaluated with them, one epoch's validation accuracy can sit several points off the
next for no reason but the statistics. The validation split is therefore read with statistics
re-estimated for the weights as they are (precise BatchNorm) on the first `PRECISE_BN_BATCHES`
batches of the epoch's training order, and the running statistics are put back afterwards, so
training and the test evaluation see exactly what they would have without it.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ..prune.density import DensityMonitor
from ..prune.recalibrate import batchnorm_statistics_for
from .data import BatchLoader

PRECISE_BN_BATCHES = 20


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, device: torch.device, autocast: bool = False):
    """Mean cross-entropy and accuracy of `model` over every sample of `loader`, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for images, labels in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            output = model(images)
        loss_sum += nn.functional.cross_entropy(output.float(), labels, reduction="sum")
        correct += (output.argmax(1) == labels).sum()
    return float(loss_sum) / loader.num_samples, float(correct) / loader.num_samples


def validate(
    model: nn.Module,
    val_loader: BatchLoader,
    train_loader: BatchLoader,
    monitor: DensityMonitor,
    *,
    fading: bool,
    autocast: bool = False,
) -> tuple[float, float]:
    """Validation loss and accuracy of `model` with precise BatchNorm statistics (see the module
    docstring); `monitor` counts none of the re-estimate's forwards. While channels are `fading`
    out, the fade has just re-estimated the statistics itself, and they are used as they are."""
    device = val_loader.device
    if fading:
        return evaluate(model, val_loader, device, autocast)
    batches = (images for images, _ in itertools.islice(train_loader, PRECISE_BN_BATCHES))
    with (
        monitor.paused(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast),
        batchnorm_statistics_for(model, batches),
    ):
        return evaluate(model, val_loader, device, autocast)
