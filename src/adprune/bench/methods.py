"""The runs of each bench method: a `TrainConfig` per method and seed, peers matched to adp-inherit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import AdpruneError
from ..prune.groups import find_groups
from ..prune.targets import fit_widths, parameters_at, uniform_widths
from ..prune.tp_compat import build_graph
from ..runs.model_files import build_dense, read_arch
from ..runs.rundir import SUMMARY_FILE, read_json
from ..train.config import TrainConfig
from .config import MATCHED, BenchConfig, base_train_config


class NothingToMatch(AdpruneError):
    """adp-inherit ended without a prune (none was due, or the accuracy guard rolled them back), so a
    method matched to its outcome has no size to aim for."""


def _adp_outcome(summary: dict[str, Any], method: str) -> tuple[int, list[dict[str, Any]]]:
    prunes = summary["prunes"]
    if not prunes:
        why = "its accuracy guard rolled its prunes back" if summary.get("rollbacks") else "no prune was due"
        raise NothingToMatch(f"adp-inherit did not prune ({why}), so {method} has no size to match")
    return summary["params"], prunes


def decided_epoch(prune: dict[str, Any]) -> int:
    """The epoch after which a summary's prune was decided (earlier than its `epoch` when it faded)."""
    return prune.get("decided") or prune["epoch"]


def _dense_groups(adp_run: Path) -> tuple[torch.nn.Module, torch.Tensor, list]:
    """The dense model `adp_run` started from (freshly built), an example input, and its prunable groups."""
    arch = read_arch(adp_run)
    model = build_dense(arch)
    example = torch.zeros(2, arch["in_channels"], arch["image_size"], arch["image_size"])
    groups = [g for g in find_groups(build_graph(model, example)) if g.skip_reason is None]
    return model, example, groups


def uniform_initial_widths(config: TrainConfig, adp_run: Path, target_params: int) -> dict[str, int]:
    """One shrink factor for every group of `config`'s dense model, fitted to `target_params`."""
    model, example, groups = _dense_groups(adp_run)
    widths, blocks = {g.name: g.width for g in groups}, {g.name: g.blocks for g in groups}
    return fit_widths(
        target_params,
        lambda keep: uniform_widths(widths, keep, min_channels=config.min_channels, blocks=blocks),
        lambda w: parameters_at(model, example, w),
    )


@dataclass(frozen=True)
class MethodRun:
    """One row's run for one seed: its row name, its method, the prune count it stands at on a
    frontier (None off a frontier) and a function building its TrainConfig."""

    name: str
    method: str
    level: int | None
    build: Callable[[], TrainConfig]


def row_name(method: str, level: int | None) -> str:
    """The row (and run directory) name of `method` at frontier prune count `level`."""
    return method if level is None else f"{method}-p{level}"


def frontier_levels(config: BenchConfig, method: str) -> list[int | None]:
    """The prune counts `method` runs at: every frontier count for adp-inherit and the methods
    matched to it, else one run (None)."""
    if config.frontier and method in ("adp-inherit", *MATCHED):
        return list(config.frontier)
    return [None]


def method_configs(config: BenchConfig, method: str, runs_dir: Path, seed: int) -> list[MethodRun]:
    """The run(s) of `method` for `seed`. The build functions of matched methods read the finished
    `adp-inherit` run of the same prune count (and train-prune-finetune the dense run), so call them
    after those ran."""
    if method == "adp-early-k":  # one ADP prune after epoch k, one row per k
        return [
            MethodRun(name, method, None, _build(config, runs_dir / name / f"seed-{seed}", seed,
                                                 prune="adp", prune_at=[k], max_prunes=1))
            for k in config.early_k
            for name in [f"adp-early-{k}"]
        ]  # fmt: skip
    return [
        MethodRun(row_name(method, lv), method, lv, _method_build(config, method, runs_dir, seed, lv))
        for lv in frontier_levels(config, method)
    ]


def _build(config: BenchConfig, out: Path, seed: int, **changes: Any) -> Callable[[], TrainConfig]:
    """A function building the shared options for a run in `out`, changed by `changes` (a callable
    value is called then, so it may read runs that finished since)."""

    def build() -> TrainConfig:
        resolved = {k: v() if callable(v) else v for k, v in changes.items()}
        return dataclasses.replace(base_train_config(config, out, seed), **resolved)

    return build


def _method_build(
    config: BenchConfig, method: str, runs_dir: Path, seed: int, level: int | None
) -> Callable[[], TrainConfig]:
    adp_run = runs_dir / row_name("adp-inherit", level) / f"seed-{seed}"
    name = row_name(method, level)

    def make(**changes: Any) -> Callable[[], TrainConfig]:
        return _build(config, runs_dir / name / f"seed-{seed}", seed, **changes)

    def adp_summary() -> dict[str, Any]:
        return read_json(adp_run / SUMMARY_FILE)

    # The peers follow adp-inherit's outcome, which its accuracy guard already vetted: they get every
    # option ADP gets (fading, re-warming) but no guard of their own, so they end at ADP's size.
    if method == "dense":
        return make(prune="none", prune_at=None, max_drop=None)
    if method == "adp-inherit":
        return make(prune="adp", mode="inherit", **({} if level is None else {"max_prunes": level}))
    if method == "adp-reinit":
        return make(prune="adp", mode="reinit")
    if method == "uniform":

        def widths() -> dict[str, int]:
            target, _ = _adp_outcome(adp_summary(), name)
            return uniform_initial_widths(base_train_config(config, adp_run, seed), adp_run, target)

        return make(prune="none", prune_at=None, initial_widths=widths, max_drop=None)
    if method == "slimming":
        return make(
            prune="adp", importance="bn_scale", bn_l1=config.slimming_l1, max_prunes=1,
            max_drop=None, target_params=lambda: _adp_outcome(adp_summary(), name)[0],
            prune_at=lambda: [decided_epoch(_adp_outcome(adp_summary(), name)[1][-1])],
        )  # fmt: skip
    if method == "train-prune-finetune":
        dense_run = runs_dir / "dense" / f"seed-{seed}"

        def start_from() -> str:
            _adp_outcome(adp_summary(), name)
            if not (dense_run / SUMMARY_FILE).exists():
                raise NothingToMatch(f"the dense run {dense_run} did not finish: {name} has no start")
            return str(dense_run)

        base_lr = base_train_config(config, adp_run, seed).lr
        return make(
            start_from=start_from, prune="none", prune_at=None, max_drop=None, importance="l1",
            initial_widths=lambda: adp_summary()["widths"], epochs=config.finetune_epochs,
            lr=config.finetune_lr if config.finetune_lr is not None else base_lr / 10,
        )  # fmt: skip

    def schedule() -> dict[str, dict[str, int]]:
        _, prunes = _adp_outcome(adp_summary(), name)
        return {str(decided_epoch(p)): p["widths_after"] for p in prunes}

    return make(
        prune="adp",
        importance="l1",
        width_schedule=schedule,
        max_prunes=lambda: len(schedule()),
        max_drop=None,
    )
