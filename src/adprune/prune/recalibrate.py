"""Re-estimating BatchNorm running statistics for the network as it computes now, on given batches.

The pruner re-estimates them itself during the last batches of every fade (see `fade`); this is
the same estimate on batches you give, with the weights untouched: for a network whose statistics
you no longer trust (loaded for other data, or edited by hand). Its forwards run in training mode,
so a `DensityMonitor` attached to the model counts them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

_NORMS = nn.modules.batchnorm._BatchNorm


def _tracking_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats]


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running mean and variance of every BatchNorm of `model` by their plain average over
    training-mode forwards of `batches` (no gradients; weights, modes and momenta are left as they
    were). Returns the number of samples used; 0 (and nothing changed) without a BatchNorm."""
    norms = _tracking_norms(model)
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    modes = [(m, m.training) for m in model.modules()]
    samples = 0
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the batches below
        model.train()
        with torch.no_grad():
            for images in batches:
                model(images)
                samples += images.shape[0]
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        for module, training in modes:
            module.training = training
    return samples


@contextlib.contextmanager
def batchnorm_statistics_for(model: nn.Module, batches: Iterable[torch.Tensor]) -> Iterator[int]:
    """Within the block every BatchNorm of `model` holds statistics re-estimated on `batches` by
    `recalibrate_batchnorm` (yields the number of samples used); after it, each running mean, variance
    and batch count is exactly what it was before."""
    norms = _tracking_norms(model)
    saved = [{name: buffer.clone() for name, buffer in norm.named_buffers(recurse=False)} for norm in norms]
    try:
        yield recalibrate_batchnorm(model, batches)
    finally:
        for norm, buffers in zip(norms, saved, strict=True):
            for name, value in buffers.items():
                getattr(norm, name).copy_(value)
