"""Mode switches and probes the method needs while it measures or traces a model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.utils.checkpoint
from torch import nn

from ..errors import AdpruneError


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


def uncompiled(module: nn.Module) -> nn.Module:
    """The module a `torch.compile` wrapper compiles (its `_orig_mod`), or `module` itself."""
    inner = getattr(module, "_orig_mod", None)
    return inner if type(module).__name__ == "OptimizedModule" and isinstance(inner, nn.Module) else module


def module_to_prune(model: nn.Module) -> nn.Module:
    """The module ADPruner edits: `model`, or the module a `torch.compile` wrapper compiles. Raises
    AdpruneError for a DataParallel or DistributedDataParallel wrapper, which holds the parameters a
    cut replaces and must be rebuilt around the pruned module."""
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        raise AdpruneError(
            f"model is wrapped in {type(model).__name__}: build the pruner on the module inside "
            "(ADPruner(ddp.module, ...)) and wrap the module again after every prune"
        )
    return uncompiled(model)


def _run_inline(function, preserve_rng_state, *args):
    return function(*args)


@contextlib.contextmanager
def plain_forward() -> Iterator[None]:
    """Run forwards as plain eager code, so a trace or an operation count sees every layer: code
    that `torch.compile` compiled runs eagerly (a compiled graph hides its layers behind one
    autograd node), and reentrant activation checkpoints (`checkpoint(..., use_reentrant=True)`,
    whose forward runs without gradients and whose backward `torch.autograd.grad` cannot run) call
    their function directly. Non-reentrant checkpoints already trace as plain code."""
    checkpoint_function = torch.utils.checkpoint.CheckpointFunction
    own = vars(checkpoint_function).get("apply")  # normally inherited from autograd.Function
    checkpoint_function.apply = staticmethod(_run_inline)
    try:
        with torch.compiler.set_stance("force_eager"):
            yield
    finally:
        if own is None:
            del checkpoint_function.apply
        else:
            checkpoint_function.apply = own


@contextlib.contextmanager
def every_parameter_traced(model: nn.Module) -> Iterator[None]:
    """Let every parameter of `model` require gradients, and restore each flag afterwards: a layer
    frozen with `requires_grad=False` (a frozen stem) leaves no autograd node, so a trace would
    not see it and the group it belongs to would look broken."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for param, _ in flags:
        param.requires_grad_(True)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


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
        with torch.no_grad(), eval_mode(model), plain_forward():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return called[0] if called else model
