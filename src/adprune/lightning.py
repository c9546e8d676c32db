"""Lightning callback: activation-density pruning inside `lightning.pytorch.Trainer.fit`.

    from adprune.lightning import ADPruneCallback

    trainer = Trainer(max_epochs=30, callbacks=[ADPruneCallback(trigger=[10, 20])])
    trainer.fit(module)

The callback builds an `ADPruner` on the LightningModule and the optimizer the Trainer configured
(`on_fit_start`), closes every training epoch with `ADPruner.epoch_end` (`on_train_epoch_end`) and
logs the densities, widths and parameter count through `LightningModule.log` on rank 0. A prune
shrinks the module's layers in place and edits the optimizer in place (its parameters and their
state are replaced by the pruned ones), so the Trainer, its strategy and every learning-rate
scheduler keep holding valid objects; under DDP the strategy's wrapper is rebuilt around the
smaller module. Lightning's weight averaging (`WeightAveraging`, `EMAWeightAveraging`,
`StochasticWeightAveraging`) keeps an averaged copy of the module: the callback prunes that copy in
step (`ADPruner.add_twin`), so the averaged weights of the kept channels survive every cut.

Checkpoints written by the Trainer hold the pruned widths and the pruner's state. A checkpoint of a
pruned module only loads into a module of the same widths, so give the LightningModule this hook,
which shrinks it before its weights are loaded (both `MyModule.load_from_checkpoint(path)` and
`Trainer.fit(module, ckpt_path=path)` call it first; the latter then goes on pruning where the run
stopped):

    def on_load_checkpoint(self, checkpoint):
        adprune.lightning.shrink_to_checkpoint(self, checkpoint)

Lightning is optional: `pip install adprune[lightning]`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .errors import AdpruneError
from .prune.arguments import resolve_pruner_options
from .prune.pruner import ADPruner
from .runs.pruned_files import checked_record, shape_record, shrink_to_record

try:  # the `lightning` package, else the older standalone `pytorch_lightning`
    import lightning.pytorch as _pl
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as _pl
    except ImportError:
        _pl = None

_INSTALL = "ADPruneCallback needs Lightning: pip install adprune[lightning] (or pip install lightning)"
_PRUNER_OPTIONS = tuple(
    name
    for name, p in inspect.signature(ADPruner.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)

__all__ = ["ADPruneCallback", "shrink_to_checkpoint"]
CHECKPOINT_KEY = "adprune"


class ADPruneCallback(_pl.Callback if _pl is not None else object):
    """Prune the LightningModule while it trains, from the activation density of its channels.

    `example_input` is one batch of inputs shaped like the training batches (a few samples are
    enough); when None, the module's `example_input_array` is used. It is moved to the module's
    device. Every other keyword goes to `ADPruner` (`trigger`, `widths`, `importance`, `max_prunes`,
    `min_reduction`, `fade`, `bn_recalibrate`, `mode`, `ignore`, `check`, ...) and the method's
    options among them are checked here, at construction (`prune.options`), with the same bounds
    and messages as `ADPruner` and `adprune train`; epochs are the Trainer's 0-based `current_epoch`. The
    last epoch of `max_epochs` never prunes, and the self-sizing rule sizes to `max_epochs` (unless
    `epochs` is given). `log_groups=False` logs only the mean density, the
    parameter count and whether the epoch pruned, not one value per group. After `fit` the pruner,
    with its ledger and prune events, is `callback.pruner`.
    Needs exactly one optimizer.
    """

    def __init__(
        self, example_input: torch.Tensor | None = None, *, log_groups: bool = True, **pruner_kwargs: Any
    ) -> None:
        if _pl is None:
            raise AdpruneError(_INSTALL)
        unknown = sorted(set(pruner_kwargs) - set(_PRUNER_OPTIONS))
        if unknown:
            raise AdpruneError(
                f"ADPruneCallback got unknown option(s) {', '.join(unknown)}; "
                f"the pruner takes {', '.join(_PRUNER_OPTIONS)}"
            )
        resolve_pruner_options(pruner_kwargs)  # refuse what cannot work now, not at fit start
        if example_input is not None and not torch.is_tensor(example_input):
            kind = type(example_input).__name__
            raise AdpruneError(f"example_input must be a tensor shaped like one training batch, got {kind}")
        super().__init__()
        self.example_input = example_input
        self.log_groups = log_groups
        self.pruner_kwargs = pruner_kwargs
        self.pruner: ADPruner | None = None
        self._loaded: dict[str, Any] | None = None  # pruner state from a checkpoint, for on_fit_start

    def on_fit_start(self, trainer, pl_module) -> None:
        optimizers = list(trainer.optimizers)
        if len(optimizers) != 1:
            raise AdpruneError(
                f"ADPruneCallback needs exactly one optimizer, configure_optimizers gave {len(optimizers)}"
            )
        (optimizer,) = optimizers
        if self.pruner is not None and self.pruner.model is pl_module:
            self.pruner.optimizer = optimizer  # a new fit: Lightning configured a new optimizer
            return
        example = self.example_input
        if example is None:
            example = getattr(pl_module, "example_input_array", None)
        if not torch.is_tensor(example):
            raise AdpruneError(
                "ADPruneCallback needs an example input: pass ADPruneCallback(example_input=batch_of_inputs) "
                "or set example_input_array on your LightningModule"
            )
        example = example.to(pl_module.device)
        options = dict(self.pruner_kwargs)
        if "epochs" not in options and trainer.max_epochs is not None and trainer.max_epochs > 0:
            options.update(epochs=trainer.max_epochs, first_epoch=0)  # the budget the rule sizes to
        with _detached_from_trainer(pl_module):
            self.pruner = ADPruner(pl_module, example, optimizer, **options)
        if self._loaded is not None:
            self.pruner.load_state_dict(self._loaded)
            self._loaded = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.pruner is None:
            return
        for callback in trainer.callbacks:  # WeightAveraging, EMAWeightAveraging, StochasticWeightAveraging
            average = getattr(callback, "_average_model", None)
            if isinstance(average, nn.Module):
                self.pruner.add_twin(average)
        epoch = trainer.current_epoch
        max_epochs = trainer.max_epochs
        last = max_epochs is not None and max_epochs >= 0 and epoch + 1 >= max_epochs
        if self.pruner.epoch_end(epoch, last=last) is not None:
            _rewrap_ddp(trainer, pl_module)
        self._log(pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The pruner's state, which Lightning keeps in its checkpoints (empty before `fit`)."""
        return {} if self.pruner is None else self.pruner.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a checkpoint's pruner state; the pruner resumes from it when the fit starts."""
        if state_dict:
            if self.pruner is not None:
                self.pruner.load_state_dict(state_dict)
            else:
                self._loaded = dict(state_dict)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Record the widths (and the input shape that traces the module) next to the weights."""
        if self.pruner is not None:
            checkpoint[CHECKPOINT_KEY] = shape_record(self.pruner)

    def _log(self, pl_module) -> None:
        pruner = self.pruner
        line = pruner.ledger[-1]
        metrics: dict[str, float] = {
            "adprune/density": sum(pruner.densities.values()) / max(len(pruner.densities), 1),
            "adprune/params": float(line.params_after),
            "adprune/pruned": float(line.pruned),
        }
        if self.log_groups:
            metrics.update({f"adprune/density/{name}": d for name, d in pruner.densities.items()})
            metrics.update({f"adprune/width/{name}": float(w) for name, w in pruner.widths.items()})
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, rank_zero_only=True)


def shrink_to_checkpoint(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Shrink `module` to the widths a checkpoint written with `ADPruneCallback` records, so that the
    checkpoint's weights fit it; call it from the module's `on_load_checkpoint`. A checkpoint written
    without the callback, or a module already at those widths, is left as it is."""
    saved = checkpoint.get(CHECKPOINT_KEY)
    if not saved:
        return
    record = checked_record(saved, "the checkpoint")
    with _detached_from_trainer(module):
        shrink_to_record(module, record)


def _rewrap_ddp(trainer, module: nn.Module) -> None:
    """Rebuild the strategy's DistributedDataParallel wrapper around the pruned module: the old one
    holds the parameters the prune replaced."""
    strategy = trainer.strategy
    if isinstance(strategy.model, torch.nn.parallel.DistributedDataParallel):
        strategy.model = strategy._setup_model(module)
        strategy._register_ddp_hooks()


@contextlib.contextmanager
def _detached_from_trainer(module: nn.Module) -> Iterator[None]:
    """Hide the module's back-references to the Trainer while the pruner copies it for its check."""
    saved = {k: module.__dict__[k] for k in ("_trainer", "_fabric") if module.__dict__.get(k) is not None}
    for key in saved:
        module.__dict__[key] = None
    try:
        yield
    finally:
        module.__dict__.update(saved)
