"""The runs of each bench method: a `TrainConfig` per method and seed, peers matched to adp-inherit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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
from .config import BenchConfig, base_train_config


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


def method_configs(
    config: BenchConfig, method: str, runs_dir: Path, seed: int
) -> list[tuple[str, Callable[[], TrainConfig]]]:
    """The run(s) of `method` for `seed`: (row name, a function building its TrainConfig). The
    functions of matched methods read `adp-inherit`'s finished run, so call them after it ran."""
    adp_run = runs_dir / "adp-inherit" / f"seed-{seed}"

    def make(name: str, **changes: Any) -> tuple[str, Callable[[], TrainConfig]]:
        def build() -> TrainConfig:
            base = base_train_config(config, runs_dir / name / f"seed-{seed}", seed)
            resolved = {k: v() if callable(v) else v for k, v in changes.items()}
            return dataclasses.replace(base, **resolved)

        return name, build

    def adp_summary() -> dict[str, Any]:
        return read_json(adp_run / SUMMARY_FILE)

    # The peers follow adp-inherit's outcome, which its accuracy guard already vetted: they get every
    # option ADP gets (fading, re-warming) but no guard of their own, so they end at ADP's size.
    if method == "dense":
        return [make("dense", prune="none", prune_at=None, max_drop=None)]
    if method == "adp-inherit":
        return [make("adp-inherit", prune="adp", mode="inherit")]
    if method == "adp-reinit":
        return [make("adp-reinit", prune="adp", mode="reinit")]
    if method == "adp-early-k":
        return [make(f"adp-early-{k}", prune="adp", prune_at=[k], max_prunes=1) for k in config.early_k]
    if method == "uniform":

        def widths() -> dict[str, int]:
            target, _ = _adp_outcome(adp_summary(), "uniform")
            return uniform_initial_widths(base_train_config(config, adp_run, seed), adp_run, target)

        return [make("uniform", prune="none", prune_at=None, initial_widths=widths, max_drop=None)]
    if method == "slimming":
        slim = make(
            "slimming", prune="adp", importance="bn_scale", bn_l1=config.slimming_l1, max_prunes=1,
            max_drop=None, target_params=lambda: _adp_outcome(adp_summary(), "slimming")[0],
            prune_at=lambda: [decided_epoch(_adp_outcome(adp_summary(), "slimming")[1][-1])],
        )  # fmt: skip
        return [slim]

    def schedule() -> dict[str, dict[str, int]]:
        _, prunes = _adp_outcome(adp_summary(), "l1-filter")
        return {str(decided_epoch(p)): p["widths_after"] for p in prunes}

    return [make("l1-filter", prune="adp", importance="l1", width_schedule=schedule, max_drop=None)]
