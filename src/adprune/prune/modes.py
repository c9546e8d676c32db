"""Mode switches and probes the method needs while it measures or traces a model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module of `model` in eval mode, and give each its own mode back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def entry_module(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """The first leaf module that a forward of `model` on `example_input` calls with a tensor.

    Every forward passes through it once, whether the training loop calls the model or the
    submodule that holds the layers (`wrapper.net(x)`), so a hook on it counts each batch once.
    Falls back to `model` itself when no leaf module sees a tensor.
    """
    called: list[nn.Module] = []

    def first(module: nn.Module, inputs: tuple) -> None:
        if not called and inputs and torch.is_tensor(inputs[0]):
            called.append(module)

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(first) for m in leaves]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return called[0] if called else model
