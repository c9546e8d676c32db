"""A run in progress: everything it holds, built fresh or restored from its newest checkpoint."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from ..errors import AdpruneError, summarize_exception
from ..models import build_model, module_names
from ..prune.pruner import ADPruner
from ..prune.surgery import shrink_to_widths
from ..prune.triggers import ConvergenceTrigger, FixedEpochs, RankingTrigger, Trigger
from ..prune.widths import DensityPlan, ParameterTarget, WidthPolicy, WidthSchedule
from ..runs.atomic import atomic_write_json
from ..runs.checkpoints import (
    CHECKPOINTS,
    TrainingState,
    checkpoint_dirs,
    load_optimizer_tensors,
    read_checkpoint,
    read_training_state,
    restore_rng,
)
from ..runs.rundir import CONFIG_FILE, keep_metrics_until, prepare_run_dir, refuse_used_run_dir
from .config import TrainConfig
from .data import BatchLoader, DatasetSplits, first_samples, load_dataset
from .data.splits import hold_out_validation
from .distributed import DistContext, init_distributed, resolve_device
from .energy import EnergyMeter
from .guard import PruneGuard
from .hardware import Hardware, apply_layout, resolve, training_module
from .optimizers import bn_sparsity, make_optimizer
from .start import StartPoint, carried_cost, check_fits, read_start, start_model


@dataclass
class Run:
    """Everything a run in progress holds."""

    config: TrainConfig
    ctx: DistContext
    splits: DatasetSplits
    out: Path
    model: nn.Module
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pruner: ADPruner
    train_loader: BatchLoader
    test_loader: BatchLoader  # the full test set
    loss_fn: nn.Module
    autocast: bool
    example: torch.Tensor
    log: Callable[[str], None]
    wall_total: dict[str, float]
    energy: EnergyMeter
    energy_before: float | None
    tensorboard: Any = None
    val_loader: BatchLoader | None = None
    test_subset_loader: BatchLoader | None = None  # what the epochs before the last evaluate on
    guard: PruneGuard = field(default_factory=lambda: PruneGuard(None))
    hardware: Hardware = field(default_factory=lambda: Hardware(1, False, False))
    sparsity: tp.pruner.BNScalePruner | None = None
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    flops_extra: int = 0  # FLOPs outside the pruner's ledger: discarded epochs, the run started from
    started_from: dict[str, Any] | None = None  # StartPoint.record() of --start-from


def _check_model_options(config: TrainConfig) -> None:
    """--model, --width and --ignore, checked before any data is read."""
    names = module_names(config.model, config.width)
    for name in config.ignore:
        if name not in names:
            raise AdpruneError(
                f"--ignore {name}: {config.model} has no module of that name (names look like "
                f"{', '.join(sorted(n for n in names if n)[:3])})"
            )


def _on_main_rank(ctx: DistContext, step: Callable[[], object], what: str) -> None:
    """Run `step` on rank 0 only; when it raised AdpruneError there, every rank raises (no rank waits)."""
    error = None
    if ctx.is_main:
        try:
            step()
        except AdpruneError as exc:
            error = exc
    if not ctx.all_ok(error is None):
        raise error or AdpruneError(f"rank 0 could not {what}; see its message")


def _prepare_out(config: TrainConfig, ctx: DistContext) -> None:
    """Make the run directory of a new run ready and write its config.json (rank 0 only)."""

    def prepare() -> None:
        prepare_run_dir(config.out, overwrite=config.overwrite)
        atomic_write_json(Path(config.out) / CONFIG_FILE, dataclasses.asdict(config))

    _on_main_rank(ctx, prepare, "prepare --out")


def _open_tensorboard(config: TrainConfig, out: Path, ctx: DistContext):
    if not (config.tensorboard and ctx.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AdpruneError(
            "--tensorboard needs the tensorboard package: pip install 'adprune[tensorboard]'"
        ) from None
    return SummaryWriter(str(out / "tensorboard"))


def _model(config: TrainConfig, splits: DatasetSplits, ctx: DistContext) -> nn.Module:
    """The dense model of `config`, freshly initialised from its seed, on the run's device."""
    torch.manual_seed(config.seed)
    return build_model(
        config.model, in_channels=splits.in_channels, num_classes=splits.num_classes,
        image_size=splits.image_size, width=config.width,
    ).to(ctx.device)  # fmt: skip


@dataclass
class _Trainables:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pruner: ADPruner


def _trainables(
    config: TrainConfig, model: nn.Module, example: torch.Tensor, saved: TrainingState | None, round_to: int
) -> _Trainables:
    """`model` at the checkpoint's widths and weights (or the initial widths), its optimizer,
    schedule and pruner; the checkpoint's optimizer, schedule and pruner state are not loaded yet."""
    if saved is not None:
        shrink_to_widths(model, example, saved.state["widths"])
        model.load_state_dict(saved.model)
    elif config.initial_widths:
        by = config.importance if config.start_from is not None else None
        shrink_to_widths(model, example, config.initial_widths, by=by)
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    trigger, widths = method_policies(config, round_to)
    pruner = ADPruner(
        model, example, optimizer, trigger=trigger, widths=widths, importance=config.importance,
        max_prunes=config.max_prunes if config.prune == "adp" else 0, min_reduction=config.min_reduction,
        epochs=config.epochs,
        fade=config.fade, bn_recalibrate=config.bn_recalibrate, mode=config.mode, ignore=config.ignore,
        density_every=config.density_every,
    )  # fmt: skip
    return _Trainables(model, optimizer, scheduler, pruner)


def method_policies(config: TrainConfig, round_to: int) -> tuple[Trigger | None, WidthPolicy]:
    """The trigger and the width policy `config`'s flags describe (the trigger None for a width
    schedule, which prunes after its own epochs)."""
    if config.width_schedule is not None:
        return None, WidthSchedule(config.width_schedule)
    if config.target_params is not None:
        widths: WidthPolicy = ParameterTarget(config.target_params, min_channels=config.min_channels)
    else:
        widths = DensityPlan(min_channels=config.min_channels, round_to=round_to)
    if config.prune_at is not None:
        return FixedEpochs(config.prune_at), widths
    kind = RankingTrigger if config.trigger == "ranking" else ConvergenceTrigger
    tol = {} if config.tol is None else {"tol": config.tol}
    return kind(patience=config.patience, **tol), widths


def _loaders(
    config: TrainConfig, splits: DatasetSplits, ctx: DistContext, channels_last: bool
) -> tuple[BatchLoader, ...]:
    """The training, test and validation loaders (the last None without a validation split)."""
    train_loader = BatchLoader(
        splits.train_images, splits.train_labels, batch_size=config.batch_size, mean=splits.mean,
        std=splits.std, device=ctx.device, train=True, augment=splits.augment, seed=config.seed,
        drop_last=True, channels_last=channels_last,
    )  # fmt: skip
    if len(train_loader) == 0:
        raise AdpruneError(
            f"--batch-size {config.batch_size} is larger than the {train_loader.num_samples} training samples"
        )
    evaluation = dict(
        batch_size=config.eval_batch_size,
        mean=splits.mean,
        std=splits.std,
        device=ctx.device,
        channels_last=channels_last,
    )
    test_loader = BatchLoader(splits.test_images, splits.test_labels, **evaluation)
    val_loader = None
    if len(splits.val_labels):
        val_loader = BatchLoader(splits.val_images, splits.val_labels, **evaluation)
    return train_loader, test_loader, val_loader


def _test_subset(config: TrainConfig, splits: DatasetSplits, full: BatchLoader) -> BatchLoader:
    """The loader of the first `--eval-subset` test images (the full loader without a smaller subset)."""
    if config.eval_subset is None or config.eval_subset >= full.num_samples:
        return full
    images, labels = first_samples(splits.test_images, splits.test_labels, config.eval_subset)
    return BatchLoader(images, labels, batch_size=config.eval_batch_size, mean=splits.mean, std=splits.std,
                       device=full.device, channels_last=full.channels_last)  # fmt: skip


def _dataset(config: TrainConfig) -> DatasetSplits:
    """The dataset with its validation split (`TrainConfig.validation_images`): held out beyond the
    --subset, so a subset trains on the same images either way, or from the end of the training set."""
    load = functools.partial(
        load_dataset, config.dataset, config.data_dir, download=config.download, subset=config.subset,
        image_size=config.image_size,
    )  # fmt: skip
    if config.subset is not None:
        return load(val=config.validation_images(config.subset))
    splits = load(val=0)
    return hold_out_validation(splits, config.validation_images(len(splits.train_labels)), None)


def setup_run(config: TrainConfig, log: Callable[[str], None], resume: bool) -> tuple[Run, int]:
    """Build (or restore) every part of the run; returns it and the first epoch still to train."""
    config.validate()
    _check_model_options(config)
    ctx = init_distributed(resolve_device(config.device))
    if config.batch_size % ctx.world_size:
        raise AdpruneError(
            f"--batch-size {config.batch_size} must be divisible by the {ctx.world_size} processes"
        )
    out = Path(config.out)
    if not resume:  # a used --out is refused before the dataset is read, and created only after
        _on_main_rank(ctx, lambda: refuse_used_run_dir(out, overwrite=config.overwrite), "use --out")
    start = read_start(config.start_from) if config.start_from is not None and not resume else None
    splits = _dataset(config)
    budget = config.accuracy_budget(len(splits.val_labels))  # refused before anything is written
    if start is not None:
        check_fits(start, config, splits)
    if not resume:
        _prepare_out(config, ctx)
    example = torch.zeros(2, *splits.input_shape, device=ctx.device)
    hardware = resolve(config.round_to, config.layout, config.compile, ctx.device)
    saved, parts = _newest_restorable(config, splits, ctx, example, hardware, log) if resume else (None, None)
    if parts is None:
        if config.start_from is not None and start is None:  # resumed before its first checkpoint
            start = read_start(config.start_from)
        model = _model(config, splits, ctx) if start is None else start_model(start, ctx.device)
        parts = _trainables(config, model, example, None, hardware.round_to)
    apply_layout(parts.model, parts.optimizer, hardware)
    train_loader, test_loader, val_loader = _loaders(config, splits, ctx, hardware.channels_last)
    run = Run(
        config, ctx, splits, out, parts.model, training_module(parts.model, ctx.wrap, hardware),
        parts.optimizer, parts.scheduler,
        parts.pruner, train_loader, test_loader,
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), ctx.device.type == "cuda", example,
        log if ctx.is_main else (lambda _: None), {"train": 0.0, "eval": 0.0, "prune": 0.0, "val": 0.0},
        EnergyMeter(ctx.device), None, _open_tensorboard(config, out, ctx), val_loader=val_loader,
        test_subset_loader=_test_subset(config, splits, test_loader),
        guard=PruneGuard(budget, config.guard_epochs), hardware=hardware,
    )  # fmt: skip
    first_epoch = restore_run(run, saved) if saved is not None else 1
    if saved is None and resume:
        if ctx.is_main:
            keep_metrics_until(out, 0)
        run.log(f"no checkpoint in {out} yet: starting it from epoch 1")
    if saved is None and start is not None:
        _carry_cost(run, start)
    if config.bn_l1 > 0 and not parts.pruner.events:
        run.sparsity = bn_sparsity(parts.model, example, config.bn_l1)
    run.energy.start()
    if run.energy.unavailable is not None:
        run.log(f"energy: not measured, {run.energy.unavailable}")
    return run, first_epoch


def _carry_cost(run: Run, start: StartPoint) -> None:
    """Count the training cost of the run `run` starts from into its totals. Energy is carried only
    when both measured it: a total missing one of them would be no total."""
    flops, wall, energy = carried_cost(start)
    run.flops_extra += flops
    for key, seconds in wall.items():
        run.wall_total[key] = run.wall_total.get(key, 0.0) + seconds
    run.started_from = start.record()
    if energy is None:
        run.energy.disable(f"the run it started from ({start.path}) measured no energy")
    run.energy_before = energy


def _restored(
    config: TrainConfig,
    splits: DatasetSplits,
    ctx: DistContext,
    example: torch.Tensor,
    saved: TrainingState,
    hardware: Hardware,
) -> _Trainables:
    """A fresh model shrunk to the checkpoint's widths with its weights, and the optimizer, schedule,
    pruner and RNG states it saved. AdpruneError naming the checkpoint when anything in it does not
    fit (a width the weights do not have, an optimizer entry for a parameter that does not exist)."""
    try:
        parts = _trainables(config, _model(config, splits, ctx), example, saved, hardware.round_to)
        load_optimizer_tensors(parts.optimizer, parts.model, saved.optimizer, saved.state["optimizer_groups"])
        parts.scheduler.load_state_dict(saved.state["scheduler"])
        parts.pruner.load_state_dict(saved.state["pruner"])
        PruneGuard(None).load_state_dict(saved.state.get("guard", {"open": [], "closed": []}))
        restore_rng(saved.rng)
    except (AdpruneError, RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise AdpruneError(f"checkpoint {saved.path} is damaged ({_why(exc)})") from None
    return parts


def _why(exc: Exception) -> str:
    """One line on why a checkpoint did not restore: for weights that do not fit the saved widths, the
    first mismatching tensor (load_state_dict puts it on a later line)."""
    if isinstance(exc, AdpruneError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines()]
    detail = next(
        (line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected"))), None
    )
    return f"the saved weights do not fit the saved widths: {detail}" if detail else summarize_exception(exc)


def _newest_restorable(
    config: TrainConfig,
    splits: DatasetSplits,
    ctx: DistContext,
    example: torch.Tensor,
    hardware: Hardware,
    log: Callable[[str], None],
) -> tuple[TrainingState | None, _Trainables | None]:
    """The newest checkpoint of the run that restores completely, and what it restores; falls back past
    damaged ones (each reported through `log`, left on disk). (None, None) when the run has no
    checkpoint yet; AdpruneError when it has some and none of them restores."""
    damaged = []
    for path in checkpoint_dirs(config.out):
        try:
            saved = read_checkpoint(path)
            return saved, _restored(config, splits, ctx, example, saved, hardware)
        except AdpruneError as exc:
            log(f"warning: {exc}; trying the one before")
            damaged.append(path.name)
    if damaged:
        raise AdpruneError(
            f"no checkpoint of {config.out} can be restored ({', '.join(damaged)} are damaged): start the "
            f"run again with --overwrite, or restore {Path(config.out) / CHECKPOINTS} from a backup"
        )
    return None, None


def restore_run(run: Run, saved: TrainingState) -> int:
    """Put a checkpoint's guard and running totals into `run`, whose model, optimizer, schedule and
    pruner `_restored` built from it; returns the first epoch still to train."""
    run.guard.load_state_dict(saved.state.get("guard", {"open": [], "closed": []}))
    run.rollbacks = list(saved.state.get("rollbacks", []))
    run.flops_extra = int(saved.state.get("flops_extra", 0))
    run.started_from = saved.state.get("started_from")
    if run.started_from is not None and run.started_from["energy_j"] is None:
        run.energy.disable(f"the run it started from ({run.started_from['run']}) measured no energy")
    run.wall_total = {"val": 0.0, **saved.state["wall_total"]}
    run.energy_before = saved.state["energy_j"]
    if run.ctx.is_main:
        keep_metrics_until(run.out, saved.epoch)
    run.log(f"resuming {run.out} after epoch {saved.epoch} from {saved.path}")
    return saved.epoch + 1


def rebuild_after_prune(run: Run) -> None:
    """The one place that rebuilds what a change of the model's tensors invalidates: the memory
    layout of the new weights and optimizer state, the training module (DDP wrapper, compiled
    graph) and the BatchNorm L1 penalty, which ends with the first prune."""
    apply_layout(run.model, run.optimizer, run.hardware)
    run.wrapped = training_module(run.model, run.ctx.wrap, run.hardware)
    run.sparsity = None


def roll_back(run: Run, epoch: int) -> int:
    """Return `run`'s model, optimizer, schedule and pruner to the checkpoint of `epoch` and stop
    pruning. The running totals (wall time, energy, the guard's record) go on: the epochs trained
    since are spent. The metrics of the epochs after `epoch` are dropped from `metrics.jsonl`.
    Returns the run's training FLOPs total at that checkpoint."""
    saved = read_training_state(run.out, epoch)
    parts = _restored(run.config, run.splits, run.ctx, run.example, saved, run.hardware)
    run.model, run.optimizer, run.scheduler = parts.model, parts.optimizer, parts.scheduler
    run.pruner = parts.pruner
    run.pruner.finished = True
    rebuild_after_prune(run)
    if run.ctx.is_main:
        keep_metrics_until(run.out, epoch)
    ledger = run.pruner.ledger
    return (ledger[-1].train_flops_total if ledger else 0) + saved.state.get("flops_extra", 0)
