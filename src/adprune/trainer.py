"""The training loop behind `adprune train`: data, model, optimizer, pruner, ledger and run directory."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import atomic_write_json, save_model
from .cost import EnergyMeter
from .data import BatchLoader, DatasetSplits, load_dataset
from .errors import AdpruneError
from .models import build_model
from .pruner import ADPruner
from .rundir import CONFIG_FILE, SUMMARY_FILE, append_metrics, prepare_run_dir


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
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    report: bool = True

    def validate(self) -> None:
        """Raise AdpruneError with a fix for the first option that cannot work."""
        if self.epochs < 1:
            raise AdpruneError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise AdpruneError("--batch-size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise AdpruneError(f"--lr must be a positive number, got {self.lr}")
        if self.subset is not None and self.subset < 1:
            raise AdpruneError(f"--subset must be at least 1, got {self.subset}")
        if not (self.width > 0 and math.isfinite(self.width)):
            raise AdpruneError(f"--width must be a positive number, got {self.width}")
        for epoch in self.prune_at or []:
            if not 1 <= epoch < self.epochs:
                raise AdpruneError(
                    f"--prune-at {epoch} is outside 1..{self.epochs - 1}: a prune must leave at least one "
                    f"epoch of the --epochs {self.epochs} budget to train the pruned network"
                )
        if self.prune_at and self.prune == "none":
            raise AdpruneError("--prune-at needs --prune adp")


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; any other name must be usable here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AdpruneError(f"--device {name!r} is not a device name: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdpruneError(
            f"--device {name} asked for CUDA but no CUDA device is available: use --device cpu"
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


def _train_epoch(model, loader, optimizer, loss_fn, device, autocast, progress) -> tuple[float, float]:
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for images, labels in progress(loader):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            output = model(images)
            loss = loss_fn(output, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().float() * labels.shape[0]
        correct += (output.detach().argmax(1) == labels).sum()
    samples = loader.num_samples if not loader.drop_last else len(loader) * loader.batch_size
    return float(loss_sum) / samples, float(correct) / samples


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
    """The one-line summary printed after each epoch."""
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


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one training job end to end and return its summary (also written to `summary.json`)."""
    config.validate()
    device = resolve_device(config.device)
    splits = load_dataset(
        config.dataset,
        config.data_dir,
        download=config.download,
        subset=config.subset,
        image_size=config.image_size,
    )
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        in_channels=splits.in_channels,
        num_classes=splits.num_classes,
        image_size=splits.image_size,
        width=config.width,
    ).to(device)
    for name in config.ignore:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise AdpruneError(f"--ignore {name}: the model has no module of that name") from None
    optimizer = make_optimizer(config, model)
    out = prepare_run_dir(config.out, overwrite=config.overwrite)
    atomic_write_json(out / CONFIG_FILE, {**dataclasses.asdict(config), "resolved_device": str(device)})

    train_loader = BatchLoader(
        splits.train_images,
        splits.train_labels,
        batch_size=config.batch_size,
        mean=splits.mean,
        std=splits.std,
        device=device,
        train=True,
        augment=splits.augment,
        seed=config.seed,
        drop_last=True,
    )
    test_loader = BatchLoader(
        splits.test_images,
        splits.test_labels,
        batch_size=config.eval_batch_size,
        mean=splits.mean,
        std=splits.std,
        device=device,
    )
    if len(train_loader) == 0:
        raise AdpruneError(
            f"--batch-size {config.batch_size} is larger than the {train_loader.num_samples} training samples"
        )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    example = torch.zeros(2, *splits.input_shape, device=device)
    pruner = ADPruner(
        model,
        example,
        optimizer,
        prune_at=config.prune_at,
        tol=config.tol,
        patience=config.patience,
        min_channels=config.min_channels,
        round_to=config.round_to,
        mode=config.mode,
        ignore=config.ignore,
        max_prunes=config.max_prunes if config.prune == "adp" else 0,
        min_reduction=config.min_reduction,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    autocast = device.type == "cuda"
    energy = EnergyMeter(device)
    energy.start()
    wall_total = {"train": 0.0, "eval": 0.0, "prune": 0.0}
    record: dict[str, Any] = {}
    for epoch in range(1, config.epochs + 1):
        train_loader.set_epoch(epoch)

        def progress(batches, epoch=epoch):
            return tqdm(
                batches,
                desc=f"epoch {epoch}/{config.epochs}",
                leave=False,
                file=sys.stderr,
                disable=not config.progress or not sys.stderr.isatty(),
            )

        started = time.perf_counter()
        train_loss, train_acc = _train_epoch(
            model, train_loader, optimizer, loss_fn, device, autocast, progress
        )
        if not math.isfinite(train_loss):
            raise AdpruneError(f"training diverged in epoch {epoch} (loss {train_loss}): lower --lr")
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        test_loss, test_acc = evaluate(model, test_loader, device, autocast)
        eval_s = time.perf_counter() - started
        widths = pruner.widths
        model, optimizer = pruner.epoch_end(epoch, last=epoch == config.epochs)
        density = {k: round(v, 5) for k, v in pruner.densities.items()}
        cost = pruner.ledger[-1]
        scheduler.step()
        wall = {"train": train_s, "eval": eval_s, "prune": cost.prune_s}
        for key, seconds in wall.items():
            wall_total[key] += seconds
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "density": density,
            "widths": widths,
            "widths_after": pruner.widths,
            "params": cost.params,
            "params_after": cost.params_after,
            "macs": cost.macs,
            "train_flops": cost.train_flops,
            "train_flops_total": cost.train_flops_total,
            "samples": cost.samples,
            "wall_s": {k: round(v, 4) for k, v in wall.items()},
            "energy_j": energy.joules(),
            "lr": optimizer.param_groups[0]["lr"],
            "pruned": cost.pruned,
        }
        append_metrics(out, record)
        log(epoch_line(record, config.epochs))
    save_model(out, model, _arch(config, splits), pruner.widths)
    summary = {
        "model": config.model,
        "dataset": config.dataset,
        "prune": config.prune,
        "mode": config.mode,
        "epochs": config.epochs,
        "train_samples": train_loader.num_samples,
        "test_acc": record["test_acc"],
        "test_loss": record["test_loss"],
        "params_initial": pruner.ledger[0].params,
        "params": record["params"],
        "macs_initial": pruner.ledger[0].macs,
        "macs": record["macs"],
        "train_flops_total": record["train_flops_total"],
        "wall_s": {k: round(v, 3) for k, v in wall_total.items()},
        "energy_j": record["energy_j"],
        "energy_source": energy.source,
        "device": str(device),
        "prunes": [dataclasses.asdict(e) for e in pruner.events],
        "widths": pruner.widths,
    }
    atomic_write_json(out / SUMMARY_FILE, summary)
    if config.report:
        _write_report(out, log)
    return summary


def _write_report(run_dir: Path, log: Callable[[str], None]) -> None:
    """Write the run's HTML report; a failure here is reported, never fatal to a finished run."""
    from .report import write_report

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log(f"report: {write_report([run_dir])}")
    except (AdpruneError, ImportError, OSError) as exc:
        log(f"report not written ({exc}); run 'adprune report {run_dir}' to retry")
