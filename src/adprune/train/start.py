"""A run that starts from another run's final model (`--start-from`): the checks, the model, the cost.

Train-prune-fine-tune is one dense run and one short run started from its final weights; the short
run's totals (training FLOPs, wall seconds, energy) include the run it started from, so its
`summary.json` alone says what the whole pipeline cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdpruneError
from ..runs.model_files import load, read_arch
from ..runs.rundir import SUMMARY_FILE, read_json
from .config import TrainConfig
from .data import DatasetSplits

_MATCHED = ("model", "width", "in_channels", "num_classes", "image_size")


@dataclass(frozen=True)
class StartPoint:
    """A finished run to start from: its directory, its `arch.json` and its `summary.json`."""

    path: Path
    arch: dict[str, Any]
    summary: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """What the summary of a run started here says about it: the run, and the cost carried over."""
        return {
            "run": str(self.path),
            "epochs": self.summary.get("epochs"),
            "test_acc": self.summary.get("test_acc"),
            "params": self.summary.get("params"),
            "train_flops_total": self.summary["train_flops_total"],
            "wall_s": self.summary["wall_s"],
            "energy_j": self.summary.get("energy_j"),
        }


def read_start(run_dir: str | Path) -> StartPoint:
    """The finished run `run_dir`, checked before any data is read: AdpruneError naming the problem
    for a directory without a valid `arch.json` or a `summary.json` with the training cost."""
    path = Path(run_dir)
    if not (path / SUMMARY_FILE).is_file():
        raise AdpruneError(
            f"--start-from {path}: no {SUMMARY_FILE} there; give a run directory 'adprune train' finished"
        )
    arch = read_arch(path)
    summary = read_json(path / SUMMARY_FILE)
    wall = summary.get("wall_s") if isinstance(summary, dict) else None
    flops = summary.get("train_flops_total") if isinstance(summary, dict) else None
    numbers = isinstance(wall, dict) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in wall.values()
    )
    if not (isinstance(flops, (int, float)) and numbers):
        raise AdpruneError(
            f"--start-from {path}: {SUMMARY_FILE} has no training cost (train_flops_total, wall_s); "
            "the run directory is damaged"
        )
    return StartPoint(path, arch, summary)


def check_fits(start: StartPoint, config: TrainConfig, splits: DatasetSplits) -> None:
    """AdpruneError when the run to start from is another model or was trained on other shapes."""
    wanted = {
        "model": config.model, "width": config.width, "in_channels": splits.in_channels,
        "num_classes": splits.num_classes, "image_size": splits.image_size,
    }  # fmt: skip
    for key in _MATCHED:
        if start.arch[key] != wanted[key]:
            raise AdpruneError(
                f"--start-from {start.path}: its {key} is {start.arch[key]!r}, this run's is "
                f"{wanted[key]!r}; start from a run of the same model and dataset"
            )


def start_model(start: StartPoint, device: torch.device) -> nn.Module:
    """The final model of the run to start from, at its widths, on `device`, in training mode."""
    return load(start.path, device).train()


def carried_cost(start: StartPoint) -> tuple[int, dict[str, float], float | None]:
    """The training FLOPs, wall seconds by part and energy (None: not measured) of the run started from."""
    wall = {key: float(value) for key, value in start.summary["wall_s"].items()}
    return int(start.summary["train_flops_total"]), wall, start.summary.get("energy_j")
