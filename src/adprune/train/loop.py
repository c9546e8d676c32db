"""The training loop behind `adprune train`: epochs, evaluation, the ledger, checkpoints and the summary."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..errors import AdpruneError
from ..prune.density import density_stats
from ..runs.atomic import atomic_write_json
from ..runs.checkpoints import save_training_state
from ..runs.model_files import save_model
from ..runs.rundir import METRICS_FILE, SUMMARY_FILE, append_metrics
from .config import TrainConfig
from .data import DatasetSplits
from .distributed import shutdown
from .guard import PruneWatch
from .optimizers import LearningRateRamp
from .run import Run, rebuild_after_prune, roll_back, setup_run
from .tensorboard import log_epoch
from .validation import evaluate, validate


def _short(values: dict[str, float | int], fmt: str, limit: int = 24) -> str:
    shown = [format(v, fmt) for v in list(values.values())[:limit]]
    return " ".join(shown) + (" …" if len(values) > limit else "")


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The one-line summary printed after each epoch (with the densities and widths below it)."""
    flag = "  PRUNED" if record["pruned"] else "  FADING OUT" if record["prune_decided"] else ""
    val = "" if record.get("val_acc") is None else f"val {100 * record['val_acc']:.2f}%  "
    test = "" if record["test_acc"] is None else f"test {100 * record['test_acc']:.2f}%  "
    return (
        f"epoch {record['epoch']}/{epochs}  "
        f"train {record['train_loss']:.3f} {100 * record['train_acc']:.1f}%  {val}{test}"
        f"params {record['params'] / 1e6:.3f}M  "
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


def _rewarm_steps(run: Run) -> int:
    """Steps of learning-rate ramp this epoch: `--rewarm` of an epoch right after a prune changed the
    network (its cut, or with `--fade` its decision: the fade is the change), else 0."""
    ledger, events = run.pruner.ledger, run.pruner.events
    if not ledger or run.config.rewarm == 0:
        return 0
    last = ledger[-1]
    changed = last.decided or (last.pruned and events and events[-1].decided is None)
    return round(run.config.rewarm * len(run.train_loader)) if changed else 0


def _train_epoch(run: Run, epoch: int) -> tuple[float, float]:
    """One pass over the training set; mean loss and accuracy over all ranks. No host sync per step."""
    model, ctx, loader = run.wrapped, run.ctx, run.train_loader
    ramp = LearningRateRamp(run.optimizer, _rewarm_steps(run))
    try:
        return _train_steps(run, epoch, model, ctx, loader, ramp)
    finally:
        ramp.restore()


def _train_steps(run: Run, epoch: int, model, ctx, loader, ramp: LearningRateRamp) -> tuple[float, float]:
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
        ramp.before_step(step)
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


def _energy(run: Run) -> float | None:
    now = run.energy.joules()
    if now is None:
        return run.energy_before
    return now + (run.energy_before or 0.0)


def _validation_needed(run: Run) -> bool:
    """The validation split is evaluated while a decision can still read it: while the pruner may
    prune, completes a faded prune, or the guard watches one."""
    if run.val_loader is None:
        return False
    return not run.pruner.finished or run.pruner.pending is not None or run.guard.watching


def _epoch(run: Run, epoch: int) -> dict[str, Any]:
    """Train, evaluate and close one epoch (maybe pruning); returns its metrics record."""
    run.train_loader.set_epoch(epoch)
    started = time.perf_counter()
    train_loss, train_acc = _train_epoch(run, epoch)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    test_loss = test_acc = None
    test_samples, last = 0, epoch == run.config.epochs
    if last or epoch % run.config.eval_every == 0:
        loader = run.test_loader if last else run.test_subset_loader
        test_loss, test_acc = evaluate(run.model, loader, run.ctx.device, run.autocast)
        test_samples = loader.num_samples
    eval_s = time.perf_counter() - started
    started = time.perf_counter()
    val_loss = val_acc = None
    if _validation_needed(run):
        val_loss, val_acc = validate(
            run.model, run.val_loader, run.train_loader, run.pruner.monitor,
            fading=run.pruner.pending is not None, autocast=run.autocast,
        )  # fmt: skip
    val_s = time.perf_counter() - started
    widths = run.pruner.widths
    if run.pruner.epoch_end(epoch, last=epoch == run.config.epochs) is not None:
        rebuild_after_prune(run)
    cost, stats = run.pruner.ledger[-1], density_stats(run.pruner.channel_densities)
    run.scheduler.step()
    wall = {"train": train_s, "eval": eval_s, "prune": cost.prune_s, "val": val_s}
    for key, seconds in wall.items():
        run.wall_total[key] += seconds
    return {
        "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
        "test_acc": test_acc, "test_samples": test_samples,
        "val_loss": val_loss, "val_acc": val_acc,
        "density": {k: round(v, 5) for k, v in run.pruner.densities.items()},
        "density_spread": round(stats["spread"], 5), "dead_share": round(stats["dead_share"], 5),
        "widths": widths, "widths_after": run.pruner.widths, "params": cost.params,
        "params_after": cost.params_after, "macs": cost.macs, "train_flops": cost.train_flops,
        "train_flops_total": cost.train_flops_total + run.flops_extra, "samples": cost.samples,
        "wall_s": {k: round(v, 4) for k, v in wall.items()}, "energy_j": _energy(run),
        "lr": run.optimizer.param_groups[0]["lr"], "pruned": cost.pruned, "prune_decided": cost.decided,
        "mask_change": cost.mask_change,
    }  # fmt: skip


def _log_epoch(run: Run, record: dict[str, Any]) -> None:
    run.log(epoch_line(record, run.config.epochs))
    for check in record["prune_checks"]:
        run.log(check_line(PruneWatch(**check)))


def _record(run: Run, record: dict[str, Any]) -> None:
    """Log the epoch, append it to metrics.jsonl, then checkpoint (rank 0 only)."""
    _log_epoch(run, record)
    if not run.ctx.is_main:
        return
    try:
        append_metrics(run.out, record)
        if run.tensorboard is not None:
            log_epoch(run.tensorboard, record)
        _checkpoint(run, record["epoch"], record["energy_j"])
    except OSError as exc:
        raise AdpruneError(
            f"cannot write epoch {record['epoch']}'s checkpoint in {run.out} ({exc.strerror or exc}); the "
            f"previous checkpoint is intact: free space, then 'adprune train --resume {run.out}'"
        ) from None


def _checkpoint(run: Run, epoch: int, energy_j: float | None) -> None:
    """Write the checkpoint of the end of `epoch`, keeping those a roll back may need."""
    state = {
        "widths": run.pruner.widths, "scheduler": run.scheduler.state_dict(),
        "pruner": run.pruner.state_dict(), "guard": run.guard.state_dict(), "rollbacks": run.rollbacks,
        "flops_extra": run.flops_extra, "wall_total": run.wall_total, "energy_j": energy_j,
        "started_from": run.started_from,
    }  # fmt: skip
    save_training_state(run.out, epoch, run.model, run.optimizer, state, pinned=run.guard.rollback_points())


def _guard(run: Run, record: dict[str, Any]) -> int | None:
    """Show the epoch's record to the guard (its closed checks go into the record); the epoch whose
    checkpoint to roll back to, or None."""
    closed, back_to = run.guard.observe(record, last=record["epoch"] == run.config.epochs)
    record["prune_checks"] = [dataclasses.asdict(w) for w in closed]
    return back_to


def _roll_back(run: Run, record: dict[str, Any], back_to: int) -> None:
    """Return the run to the checkpoint of `back_to` and record why and what the discarded epochs
    cost (their FLOPs stay in the running total)."""
    spent = record["train_flops_total"]
    total_then = roll_back(run, back_to)
    run.flops_extra = spent - (run.pruner.ledger[-1].train_flops_total if run.pruner.ledger else 0)
    check = next(c for c in record["prune_checks"] if c["rolled_back"])
    run.rollbacks.append({"from_epoch": record["epoch"], "to_epoch": back_to,
                          "train_flops_discarded": spent - total_then, "check": check})  # fmt: skip
    run.log(
        f"  roll back: the prune cost more than the accuracy budget (--max-drop {run.guard.max_drop} points "
        f"of validation accuracy); training on from the checkpoint of epoch {back_to} without pruning"
    )


def check_line(watch: PruneWatch) -> str:
    """The log line of a prune whose recovery ended: training and validation accuracy around it."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    val = ""
    if watch.val_acc_before is not None:
        val = f"; val acc {pct(watch.val_acc_before)} -> {pct(watch.val_acc_after)}"
    epochs = watch.val_epochs
    if len(epochs) > 1:
        val += f" (mean of epochs {epochs[0]}-{epochs[-1]})"
    cost = watch.drop_pts()
    if watch.val_acc_expected is not None and cost is not None:
        val += f", unpruned heading to {pct(watch.val_acc_expected)}: cost {cost:.2f} pts"
    return (
        f"  prune decided after epoch {watch.decided}: train acc {pct(watch.train_acc_before)} -> lowest "
        f"after {pct(watch.train_acc_after)}{val}{'  ROLLED BACK' if watch.rolled_back else ''}"
    )


def _check_ranks_agree(run: Run) -> None:
    """Under DDP every rank must end with the same widths and weights; say so, or fail loudly."""
    if run.ctx.world_size == 1:
        return
    widths = torch.tensor(list(run.pruner.widths.values()), dtype=torch.float64, device=run.ctx.device)
    weights = torch.cat([p.detach().double().flatten() for p in run.model.parameters()])
    if not (run.ctx.agree(widths) and run.ctx.agree(weights)):
        raise AdpruneError("the ranks ended with different widths or weights: please report this as a bug")
    run.log(f"all {run.ctx.world_size} ranks end with identical widths and weights")


def _finish(run: Run, record: dict[str, Any]) -> dict[str, Any]:
    _check_ranks_agree(run)
    ledger = run.pruner.ledger
    summary = {
        "model": run.config.model, "dataset": run.config.dataset, "prune": run.config.prune,
        "mode": run.config.mode, "epochs": run.config.epochs, "train_samples": run.train_loader.num_samples,
        "world_size": run.ctx.world_size, "test_acc": record["test_acc"], "test_loss": record["test_loss"],
        "params_initial": ledger[0].params, "params": record["params_after"], "macs_initial": ledger[0].macs,
        "macs": run.pruner.model_costs()[0], "train_flops_total": record["train_flops_total"],
        "wall_s": {k: round(v, 3) for k, v in run.wall_total.items()}, "energy_j": record["energy_j"],
        "energy_source": run.energy.source, "energy_unavailable": run.energy.unavailable,
        "device": str(run.ctx.device),
        "prunes": [dataclasses.asdict(e) for e in run.pruner.events], "widths": run.pruner.widths,
        "prune_checks": [dataclasses.asdict(w) for w in run.guard.closed], "rollbacks": run.rollbacks,
        "decisions_read": _decisions_read(run), "hardware": run.hardware.to_dict(),
        "started_from": run.started_from,
    }  # fmt: skip
    if run.ctx.is_main:
        save_model(run.out, run.model, _arch(run.config, run.splits), run.pruner.widths)
        atomic_write_json(run.out / SUMMARY_FILE, summary)
        if run.tensorboard is not None:
            run.tensorboard.close()
        if run.config.report:
            _write_report(run.out, run.log)
    return summary


def _decisions_read(run: Run) -> str:
    """What the run's decisions during training read, in words (never the test set)."""
    source = "the training batches' activation densities"
    if run.guard.max_drop is not None:
        return (
            f"{source}; the accuracy guard (budget {run.guard.max_drop} points): "
            f"{run.val_loader.num_samples} validation images held out of training"
        )
    return source


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
        run, first_epoch = setup_run(config, log, resume)
        if first_epoch == 1 and run.guard.max_drop is not None and run.ctx.is_main:
            _checkpoint(run, 0, None)  # what a roll back of a prune after epoch 1 returns to
        record, epoch = None, first_epoch
        while epoch <= config.epochs:
            record = _epoch(run, epoch)
            back_to = _guard(run, record)
            if back_to is None:
                _record(run, record)
                epoch += 1
            else:
                _log_epoch(run, record)
                _roll_back(run, record, back_to)
                epoch = back_to + 1
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


def _last_record(run: Run) -> dict[str, Any]:
    """The metrics of the final epoch, for a run resumed after its last epoch was checkpointed."""
    lines = (run.out / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])


def _write_report(run_dir: Path, log: Callable[[str], None]) -> None:
    """Write the run's HTML report; a failure here is reported, never fatal to a finished run."""
    from ..report.html import write_report

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log(f"report: {write_report([run_dir])}")
    except (AdpruneError, ImportError, OSError) as exc:
        log(f"report not written ({exc}); run 'adprune report {run_dir}' to retry")
