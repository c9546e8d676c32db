"""The optimizer of a run and the regulariser of the Network Slimming peer method."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from ..errors import AdpruneError
from ..models import output_layer
from .config import TrainConfig


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, Adam (weight decay added to the gradient, i.e. L2) or AdamW
    (decoupled weight decay), with weight decay off for biases and norm scales."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise AdpruneError(f"--optimizer must be sgd, adam or adamw, got {config.optimizer!r}")


def bn_sparsity(model: nn.Module, example: torch.Tensor, strength: float) -> tp.pruner.BNScalePruner:
    """Network Slimming's L1 penalty on BatchNorm scales (Torch-Pruning's regulariser), for the
    training before the first prune; the classifier is left out."""
    return tp.pruner.BNScalePruner(
        model, example, tp.importance.BNScaleImportance(), reg=strength, ignored_layers=[output_layer(model)]
    )


class LearningRateRamp:
    """Ramps every param group's learning rate up linearly over the first `steps` steps of an epoch.

    Call `before_step(step)` (steps count from 1) before each optimizer step: step k of the ramp uses
    `k / (steps + 1)` of the rate, from step `steps + 1` on the full rate. `restore()` puts the
    scheduled rates back; call it before the scheduler steps, as schedulers read the current rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.optimizer = optimizer
        self.steps = steps
        self.base = [group["lr"] for group in optimizer.param_groups]

    def before_step(self, step: int) -> None:
        """Set the rates of step `step` of the epoch."""
        if step > self.steps + 1:
            return
        share = min(1.0, step / (self.steps + 1))
        for group, lr in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = lr * share

    def restore(self) -> None:
        """Put the scheduled learning rates back."""
        for group, lr in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = lr
