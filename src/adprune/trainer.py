"""The training loop behind `adprune train`: data, model, optimizer, pruner, ledger and run directory."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from tqdm import tqdm

from .checkpoint import MAX_IMAGE_SIZE, MAX_WIDTH_MULTIPLIER, atomic_write_json, save_model, shrink_to_widths
from .cost import EnergyMeter
from .data import BatchLoader, DatasetSplits, load_dataset
from .distributed import DistContext, init_distributed, shutdown
from .errors import AdpruneError
from .importance import IMPORTANCES
from .models import build_model, output_layer
from .pruner import MODES, ADPruner
from .rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    append_metrics,
    keep_metrics_until,
    prepare_run_dir,
)
from .tensorboard import log_epoch
from .training_state import (
    latest_training_state,
    load_optimizer_tensors,
    pruner_state,
    restore_pruner,
    restore_rng,
    save_training_state,
)

OPTIMIZERS = ("sgd", "adamw")
PRUNE_CHOICES = ("adp", "none")
MAX_EPOCHS = 100_000
MAX_LR = 100.0


def _range_text(low: float, high: float, closed: bool) -> str:
    if high == math.inf:
        return f"at least {low}" if closed else f"greater than {low}"
    return f"in {'[' if closed else '('}{low}, {high:,}]"


@dataclass
class TrainConfig:
    """Every option of a training run; written resolved to `config.json`."""

    out: str
    model: str = "vgg11"
    width: float = 1.0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None
    image_size: int | None = None
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1000
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    prune: str = "adp"
    prune_at: list[int] | None = None
    tol: float = 0.02
    patience: int = 2
    min_channels: int = 4
    round_to: int = 1
    max_prunes: int = 3
    min_reduction: float = 0.05
    mode: str = "inherit"
    ignore: list[str] = dataclasses.field(default_factory=list)
    importance: str = "density"
    width_schedule: dict[str, dict[str, int]] | None = None
    target_params: int | None = None
    initial_widths: dict[str, int] | None = None
    bn_l1: float = 0.0
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    report: bool = True
    tensorboard: bool = False

    def validate(self) -> None:
        """Raise AdpruneError with a fix for the first option that cannot work.

        Beyond what each option needs, sanity bounds catch typos and damaged config files before
        anything is allocated: --epochs <= 100,000, --width <= 64, --image-size <= 4096, --lr <= 100.
        """
        choices = (("--optimizer", self.optimizer, OPTIMIZERS), ("--prune", self.prune, PRUNE_CHOICES),
                   ("--mode", self.mode, MODES), ("--importance", self.importance, IMPORTANCES))  # fmt: skip
        for option, value, allowed in choices:
            if value not in allowed:
                raise AdpruneError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
        ranges = (  # option, value, lowest, highest, whether the lowest itself is allowed
            ("--epochs", self.epochs, 1, MAX_EPOCHS, True),
            ("--batch-size", self.batch_size, 2, math.inf, True),  # batch norm needs two samples
            ("--eval-batch-size", self.eval_batch_size, 1, math.inf, True),
            ("--subset", 1 if self.subset is None else self.subset, 1, math.inf, True),
            ("--image-size", 1 if self.image_size is None else self.image_size, 1, MAX_IMAGE_SIZE, True),
            ("--width", self.width, 0, MAX_WIDTH_MULTIPLIER, False),
            ("--lr", self.lr, 0, MAX_LR, False),
            ("--momentum", self.momentum, 0, 1, True),
            ("--weight-decay", self.weight_decay, 0, 1, True),
            ("--label-smoothing", self.label_smoothing, 0, 1, True),
            ("--tol", self.tol, 0, 1, False),
            ("--patience", self.patience, 1, MAX_EPOCHS, True),
            ("--min-channels", self.min_channels, 1, math.inf, True),
            ("--round-to", self.round_to, 1, math.inf, True),
            ("--max-prunes", self.max_prunes, 0, math.inf, True),
            ("--min-reduction", self.min_reduction, 0, 1, True),
            ("--seed", self.seed, 0, 2**63 - 1, True),
            ("--target-params", 1 if self.target_params is None else self.target_params, 1, math.inf, True),
            ("--bn-l1", self.bn_l1, 0, 1, True),
        )
        for option, value, low, high, closed in ranges:
            if not ((low <= value) if closed else (low < value)) or not value <= high:  # NaN fails too
                raise AdpruneError(f"{option} must be {_range_text(low, high, closed)}, got {value}")
        for epoch in self.prune_at or []:
            if not 1 <= epoch < self.epochs:
                raise AdpruneError(
                    f"--prune-at {epoch} is outside 1..{self.epochs - 1}: a prune must leave at least one "
                    f"epoch of the --epochs {self.epochs} budget to train the pruned network"
                )
        if self.prune_at and self.prune == "none":
            raise AdpruneError("--prune-at needs --prune adp")
        self._validate_widths()

    def _validate_widths(self) -> None:
        if self.prune == "none" and (self.width_schedule is not None or self.target_params is not None):
            raise AdpruneError("a width schedule or --target-params needs --prune adp")
        if self.width_schedule is not None and self.target_params is not None:
            raise AdpruneError("give a width schedule or --target-params, not both")
        for epoch, widths in (self.width_schedule or {}).items():
            if not (epoch.isdigit() and 1 <= int(epoch) < self.epochs):
                raise AdpruneError(
                    f"width schedule epoch {epoch!r} is not an epoch in 1..{self.epochs - 1}: key each "
                    "widths mapping by the epoch after which to prune"
                )
            self._check_widths(f"width schedule epoch {epoch}", widths)
        self._check_widths("initial widths", self.initial_widths or {})

    @staticmethod
    def _check_widths(what: str, widths: dict[str, int]) -> None:
        for name, width in widths.items():
            if not 1 <= width <= 2**31:
                raise AdpruneError(f"{what}: width {width} for '{name}' must be a positive channel count")


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; otherwise 'cpu' or an existing 'cuda[:N]'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise AdpruneError(f"--device {name!r} is not a device adprune trains on: use auto, cpu or cuda[:N]")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise AdpruneError(
            f"--device {name} asked for CUDA device {device.index or 0} but {count} are available: "
            "use --device cpu or an existing cuda:N"
        )
    return device


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW, with weight decay off for biases and norm scales."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise AdpruneError(f"--optimizer must be sgd or adamw, got {config.optimizer!r}")


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


def _short(values: dict[str, float | int], fmt: str, limit: int = 24) -> str:
    shown = [format(v, fmt) for v in list(values.values())[:limit]]
    return " ".join(shown) + (" …" if len(values) > limit else "")


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The one-line summary printed after each epoch (with the densities and widths below it)."""
    flag = "  PRUNED" if record["pruned"] else ""
    return (
        f"epoch {record['epoch']}/{epochs}  "
        f"train {record['train_loss']:.3f} {100 * record['train_acc']:.1f}%  "
        f"test {100 * record['test_acc']:.2f}%  params {record['params'] / 1e6:.3f}M  "
        f"macs {record['macs'] / 1e6:.1f}M  {record['wall_s']['train']:.0f}s{flag}\n"
        f"  AD {_short(record['density'], '.2f')}\n  widths {_short(record['widths'], 'd')}"
    )


def _arch(config: TrainConfig, splits: DatasetSplits) -> dict[str, Any]:
    return {
        "model": config.model,
        "in_channels": splits.in_channels,
        "num_classes": splits.num_classes,
        "image_size": splits.image_size,
        "width": config.width,
        "mean": list(splits.mean),
        "std": list(splits.std),
    }


def _train_epoch(run: _Run, epoch: int) -> tuple[float, float]:
    """One pass over the training set; mean loss and accuracy over all ranks. No host sync per step."""
    model, ctx, loader = run.wrapped, run.ctx, run.train_loader
    model.train()
    loss_sum = torch.zeros((), device=ctx.device)
    correct = torch.zeros((), device=ctx.device, dtype=torch.int64)
    first_bad_step = torch.full((), -1, device=ctx.device, dtype=torch.int64)
    batches = tqdm(
        loader, desc=f"epoch {epoch}/{run.config.epochs}", leave=False, file=sys.stderr,
        disable=not (run.config.progress and ctx.is_main and sys.stderr.isatty()),
    )  # fmt: skip
    for step, (images, labels) in enumerate(batches, 1):
        images, labels = ctx.shard(images), ctx.shard(labels)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=run.autocast):
            output = model(images)
            loss = run.loss_fn(output, labels)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.sparsity is not None:
            run.sparsity.regularize(run.model)
        run.optimizer.step()
        loss = loss.detach().float()
        loss_sum += loss * labels.shape[0]
        correct += (output.detach().argmax(1) == labels).sum()
        bad = (first_bad_step < 0) & ~torch.isfinite(loss)
        first_bad_step = torch.where(bad, torch.full_like(first_bad_step, step), first_bad_step)
    totals = ctx.sum(torch.stack([loss_sum.double(), correct.double()]))
    bad_step = int(ctx.max(first_bad_step))
    if bad_step > 0:
        raise AdpruneError(
            f"the training loss became {float(loss)} in epoch {epoch}, step {bad_step}: lower --lr, or "
            f"resume from the last good checkpoint with 'adprune train --resume {run.config.out}'"
        )
    samples = len(loader) * loader.batch_size
    return float(totals[0]) / samples, float(totals[1]) / samples


@dataclass
class _Run:
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
    test_loader: BatchLoader
    loss_fn: nn.Module
    autocast: bool
    example: torch.Tensor
    log: Callable[[str], None]
    wall_total: dict[str, float]
    energy: EnergyMeter
    energy_before: float | None
    tensorboard: Any = None
    sparsity: tp.pruner.BNScalePruner | None = None


def _validate_ignore(model: nn.Module, names: list[str]) -> None:
    for name in names:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise AdpruneError(f"--ignore {name}: the model has no module of that name") from None


def _prepare_out(config: TrainConfig, ctx: DistContext, resume: bool) -> Path:
    """The run directory, made ready by rank 0 only; every rank fails if rank 0 could not."""
    out, error = Path(config.out), None
    if ctx.is_main and not resume:
        try:
            prepare_run_dir(out, overwrite=config.overwrite)
            atomic_write_json(out / CONFIG_FILE, dataclasses.asdict(config))
        except AdpruneError as exc:
            error = exc
    if not ctx.all_ok(error is None):
        raise error or AdpruneError("rank 0 could not prepare --out; see its message")
    return out


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


def _setup(config: TrainConfig, log: Callable[[str], None], resume: bool) -> tuple[_Run, int]:
    """Build (or restore) every part of the run; returns it and the first epoch still to train."""
    config.validate()
    ctx = init_distributed(resolve_device(config.device))
    if config.batch_size % ctx.world_size:
        raise AdpruneError(
            f"--batch-size {config.batch_size} must be divisible by the {ctx.world_size} processes"
        )
    splits = load_dataset(
        config.dataset, config.data_dir, download=config.download, subset=config.subset,
        image_size=config.image_size,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = build_model(
        config.model, in_channels=splits.in_channels, num_classes=splits.num_classes,
        image_size=splits.image_size, width=config.width,
    ).to(ctx.device)  # fmt: skip
    _validate_ignore(model, config.ignore)
    out = _prepare_out(config, ctx, resume)
    example = torch.zeros(2, *splits.input_shape, device=ctx.device)
    saved = latest_training_state(out, warn=log) if resume else None
    if saved is not None:
        shrink_to_widths(model, example, saved.state["widths"])
        model.load_state_dict(saved.model)
    elif config.initial_widths:
        shrink_to_widths(model, example, config.initial_widths)
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    pruner = ADPruner(
        model, example, optimizer, prune_at=config.prune_at, tol=config.tol, patience=config.patience,
        min_channels=config.min_channels, round_to=config.round_to, mode=config.mode, ignore=config.ignore,
        max_prunes=config.max_prunes if config.prune == "adp" else 0, min_reduction=config.min_reduction,
        importance=config.importance, schedule=config.width_schedule, target_params=config.target_params,
    )  # fmt: skip
    train_loader = BatchLoader(
        splits.train_images, splits.train_labels, batch_size=config.batch_size, mean=splits.mean,
        std=splits.std, device=ctx.device, train=True, augment=splits.augment, seed=config.seed,
        drop_last=True,
    )  # fmt: skip
    if len(train_loader) == 0:
        raise AdpruneError(
            f"--batch-size {config.batch_size} is larger than the {train_loader.num_samples} training samples"
        )
    test_loader = BatchLoader(
        splits.test_images, splits.test_labels, batch_size=config.eval_batch_size, mean=splits.mean,
        std=splits.std, device=ctx.device,
    )  # fmt: skip
    run = _Run(
        config, ctx, splits, out, model, ctx.wrap(model), optimizer, scheduler, pruner, train_loader,
        test_loader,
        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), ctx.device.type == "cuda", example,
        log if ctx.is_main else (lambda _: None), {"train": 0.0, "eval": 0.0, "prune": 0.0},
        EnergyMeter(ctx.device), None, _open_tensorboard(config, out, ctx),
    )  # fmt: skip
    first_epoch = 1
    if saved is not None:
        load_optimizer_tensors(optimizer, model, saved.optimizer, saved.state["optimizer_groups"])
        scheduler.load_state_dict(saved.state["scheduler"])
        restore_pruner(pruner, saved.state["pruner"])
        restore_rng(saved.rng)
        run.wall_total = dict(saved.state["wall_total"])
        run.energy_before = saved.state["energy_j"]
        first_epoch = saved.epoch + 1
        if ctx.is_main:
            keep_metrics_until(out, saved.epoch)
        run.log(f"resuming {out} after epoch {saved.epoch} from {saved.path}")
    elif resume:
        if ctx.is_main:
            keep_metrics_until(out, 0)
        run.log(f"no checkpoint in {out} yet: starting it from epoch 1")
    if config.bn_l1 > 0 and not pruner.events:
        run.sparsity = _bn_sparsity(model, example, config.bn_l1)
    run.energy.start()
    return run, first_epoch


def _bn_sparsity(model: nn.Module, example: torch.Tensor, strength: float) -> tp.pruner.BNScalePruner:
    """Network Slimming's L1 penalty on BatchNorm scales (Torch-Pruning's regulariser), for the
    training before the first prune; the classifier is left out."""
    return tp.pruner.BNScalePruner(
        model, example, tp.importance.BNScaleImportance(), reg=strength, ignored_layers=[output_layer(model)]
    )


def _energy(run: _Run) -> float | None:
    now = run.energy.joules()
    if now is None:
        return run.energy_before
    return now + (run.energy_before or 0.0)


def _epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """Train, evaluate and close one epoch (maybe pruning); returns its metrics record."""
    run.train_loader.set_epoch(epoch)
    started = time.perf_counter()
    train_loss, train_acc = _train_epoch(run, epoch)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    test_loss, test_acc = evaluate(run.model, run.test_loader, run.ctx.device, run.autocast)
    eval_s = time.perf_counter() - started
    widths = run.pruner.widths
    _, run.optimizer = run.pruner.epoch_end(epoch, last=epoch == run.config.epochs)
    cost = run.pruner.ledger[-1]
    if cost.pruned:
        run.wrapped = run.ctx.wrap(run.model)
        run.sparsity = None
    run.scheduler.step()
    wall = {"train": train_s, "eval": eval_s, "prune": cost.prune_s}
    for key, seconds in wall.items():
        run.wall_total[key] += seconds
    return {
        "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
        "test_acc": test_acc, "density": {k: round(v, 5) for k, v in run.pruner.densities.items()},
        "widths": widths, "widths_after": run.pruner.widths, "params": cost.params,
        "params_after": cost.params_after, "macs": cost.macs, "train_flops": cost.train_flops,
        "train_flops_total": cost.train_flops_total, "samples": cost.samples,
        "wall_s": {k: round(v, 4) for k, v in wall.items()}, "energy_j": _energy(run),
        "lr": run.optimizer.param_groups[0]["lr"], "pruned": cost.pruned,
    }  # fmt: skip


def _record(run: _Run, record: dict[str, Any]) -> None:
    """Log the epoch, append it to metrics.jsonl, then checkpoint (rank 0 only)."""
    run.log(epoch_line(record, run.config.epochs))
    if not run.ctx.is_main:
        return
    state = {
        "widths": run.pruner.widths, "scheduler": run.scheduler.state_dict(),
        "pruner": pruner_state(run.pruner),
        "wall_total": run.wall_total, "energy_j": record["energy_j"],
    }  # fmt: skip
    try:
        append_metrics(run.out, record)
        if run.tensorboard is not None:
            log_epoch(run.tensorboard, record)
        save_training_state(run.out, record["epoch"], run.model, run.optimizer, state)
    except OSError as exc:
        raise AdpruneError(
            f"cannot write epoch {record['epoch']}'s checkpoint in {run.out} ({exc.strerror or exc}); the "
            f"previous checkpoint is intact: free space, then 'adprune train --resume {run.out}'"
        ) from None


def _check_ranks_agree(run: _Run) -> None:
    """Under DDP every rank must end with the same widths and weights; say so, or fail loudly."""
    if run.ctx.world_size == 1:
        return
    widths = torch.tensor(list(run.pruner.widths.values()), dtype=torch.float64, device=run.ctx.device)
    weights = torch.cat([p.detach().double().flatten() for p in run.model.parameters()])
    if not (run.ctx.agree(widths) and run.ctx.agree(weights)):
        raise AdpruneError("the ranks ended with different widths or weights: please report this as a bug")
    run.log(f"all {run.ctx.world_size} ranks end with identical widths and weights")


def _finish(run: _Run, record: dict[str, Any]) -> dict[str, Any]:
    _check_ranks_agree(run)
    ledger = run.pruner.ledger
    summary = {
        "model": run.config.model, "dataset": run.config.dataset, "prune": run.config.prune,
        "mode": run.config.mode, "epochs": run.config.epochs, "train_samples": run.train_loader.num_samples,
        "world_size": run.ctx.world_size, "test_acc": record["test_acc"], "test_loss": record["test_loss"],
        "params_initial": ledger[0].params, "params": record["params"], "macs_initial": ledger[0].macs,
        "macs": record["macs"], "train_flops_total": record["train_flops_total"],
        "wall_s": {k: round(v, 3) for k, v in run.wall_total.items()}, "energy_j": record["energy_j"],
        "energy_source": run.energy.source, "device": str(run.ctx.device),
        "prunes": [dataclasses.asdict(e) for e in run.pruner.events], "widths": run.pruner.widths,
    }  # fmt: skip
    if run.ctx.is_main:
        save_model(run.out, run.model, _arch(run.config, run.splits), run.pruner.widths)
        atomic_write_json(run.out / SUMMARY_FILE, summary)
        if run.tensorboard is not None:
            run.tensorboard.close()
        if run.config.report:
            _write_report(run.out, run.log)
    return summary


def print_now(line: str) -> None:
    """Print a line and flush it at once, so logs redirected to a file follow the run live."""
    print(line, flush=True)


def train(
    config: TrainConfig, log: Callable[[str], None] = print_now, *, resume: bool = False
) -> dict[str, Any]:
    """Run one training job end to end and return its summary (also written to `summary.json`).

    With `resume`, continue the run in `config.out` from its newest good checkpoint: the epochs after
    it are trained again, exactly as they would have been.
    """
    try:
        run, first_epoch = _setup(config, log, resume)
        record = None
        for epoch in range(first_epoch, config.epochs + 1):
            record = _epoch(run, epoch)
            _record(run, record)
        if record is None:
            record = _last_record(run)
        return _finish(run, record)
    except KeyboardInterrupt:
        raise AdpruneError(
            "interrupted; the last finished epoch is checkpointed: continue with "
            f"'adprune train --resume {config.out}'"
        ) from None
    finally:
        shutdown()


def _last_record(run: _Run) -> dict[str, Any]:
    """The metrics of the final epoch, for a run resumed after its last epoch was checkpointed."""
    lines = (run.out / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])


def _write_report(run_dir: Path, log: Callable[[str], None]) -> None:
    """Write the run's HTML report; a failure here is reported, never fatal to a finished run."""
    from .report import write_report

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log(f"report: {write_report([run_dir])}")
    except (AdpruneError, ImportError, OSError) as exc:
        log(f"report not written ({exc}); run 'adprune report {run_dir}' to retry")
