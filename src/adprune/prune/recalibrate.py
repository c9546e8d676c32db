"""Re-estimating BatchNorm running statistics for the network as it computes now.

While a prune fades its channels out the network's function changes step by step, and the running
statistics of every BatchNorm after them (an exponential average with momentum 0.1) trail behind:
evaluated right after the fade, a network that trains well can score near chance. Re-estimating the
statistics on a few training batches, with the weights untouched, removes that lag.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_NORMS = nn.modules.batchnorm._BatchNorm


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running mean and variance of every BatchNorm of `model` by their plain average over
    training-mode forwards of `batches` (no gradients; weights, modes and momenta are left as they
    were). Returns the number of samples used; 0 (and nothing changed) without a BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats]
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
