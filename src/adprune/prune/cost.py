"""What a network costs: parameters, inference MACs, training FLOPs (energy: `train/energy.py`).

Operation counts come from `torch.utils.flop_counter.FlopCounterMode`, which counts at the aten
level, so functional ops and any module type count. It counts matrix products and convolutions
(a multiply-add is 2 FLOPs); elementwise ops, normalisation and pooling are not counted, which
is the usual convention and under 1% of the work of a conv network.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .modes import eval_mode, plain_forward
from .outputs import scalar_of


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def _counted_flops(model: nn.Module, fn) -> int:
    """FLOPs of `fn()`, run with `model` in eval mode so no BatchNorm statistic and no density count moves,
    as plain eager code (`modes.plain_forward`: an activation checkpoint's recomputation is not counted)."""
    counter = FlopCounterMode(display=False)
    with eval_mode(model), plain_forward(), counter:
        fn()
    return int(counter.get_total_flops())


def inference_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ONE sample shaped like `example_input[0]`."""
    sample = example_input[:1]

    def forward() -> None:
        with torch.no_grad():
            model(sample)

    return _counted_flops(model, forward) // 2


def training_flops_per_sample(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one training step per sample: forward, input gradients and weight gradients.

    Measured on a real forward and backward over `example_input`; the gradients are returned by
    `torch.autograd.grad` and dropped, so the parameters' `.grad` fields are untouched.
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        with torch.enable_grad():
            output = model(example_input)
            torch.autograd.grad(scalar_of(output), params, allow_unused=True)

    return _counted_flops(model, step) // example_input.shape[0]
