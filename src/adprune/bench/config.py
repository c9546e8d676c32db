"""Bench configurations: the shared training options, the methods, the seeds and the methods' knobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from ..runs.rundir import read_json
from ..train.config import TrainConfig
from ..train.config_file import validate_config

METHODS = (
    "dense", "adp-inherit", "adp-reinit", "adp-early-k", "uniform", "slimming", "l1-filter",
    "train-prune-finetune",
)  # fmt: skip
MATCHED = ("uniform", "slimming", "l1-filter", "train-prune-finetune")
"""The methods that aim at `adp-inherit`'s outcome of the same seed (and prune count, on a frontier)."""
RUN_ONLY_OPTIONS = ("out", "overwrite", "progress", "report", "tensorboard")


@dataclass
class BenchConfig:
    """A bench configuration: shared `train` options, the methods, the seeds and the methods' knobs."""

    name: str
    train: dict[str, Any]
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    early_k: list[int] = field(default_factory=lambda: [1, 2])
    slimming_l1: float = 1e-4
    seeds: int = 1
    description: str = ""
    frontier: list[int] = field(default_factory=list)
    finetune_epochs: int = 5
    finetune_lr: float | None = None


def load_bench_config(path: str | Path) -> BenchConfig:
    """Read and check a bench configuration file; a bare name is looked up in `bench/configs/`.

    Raises AdpruneError naming the file and the first problem: unknown keys or methods, early-k
    epochs outside the budget, or training options `adprune train` would reject.
    """
    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        path = Path("bench") / "configs" / f"{path}.json"
    obj = read_json(path)
    names = {f.name for f in dataclasses.fields(BenchConfig)}
    unknown = sorted(set(obj) - names)
    if unknown or "name" not in obj or not isinstance(obj.get("train"), dict):
        problem = f"unknown keys {unknown}" if unknown else "it needs 'name' and a 'train' object"
        raise AdpruneError(f"{path}: {problem}; keys are {', '.join(sorted(names))}")
    try:
        config = BenchConfig(**obj)
    except TypeError as exc:
        raise AdpruneError(f"{path}: {exc}") from None
    _check_bench_config(config, path)
    return config


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bench_config(config: BenchConfig, path: Path) -> None:
    bad = [m for m in config.methods if m not in METHODS] if isinstance(config.methods, list) else ["?"]
    if bad or not config.methods:
        raise AdpruneError(f"{path}: methods must be a non-empty list of {', '.join(METHODS)}; got {bad}")
    name = config.name
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise AdpruneError(f"{path}: name must be a plain file name, got {config.name!r}")
    if not isinstance(config.description, str):
        raise AdpruneError(f"{path}: description must be a string, got {config.description!r:.80}")
    if not (_whole(config.seeds) and 1 <= config.seeds <= 100):
        raise AdpruneError(f"{path}: seeds must be a whole number in 1..100, got {config.seeds!r}")
    if not (isinstance(config.slimming_l1, (int, float)) and 0 <= config.slimming_l1 <= 1):
        raise AdpruneError(f"{path}: slimming_l1 must be a number in [0, 1], got {config.slimming_l1!r}")
    if not (isinstance(config.frontier, list) and all(_whole(k) and 1 <= k <= 100 for k in config.frontier)
            and len(set(config.frontier)) == len(config.frontier)):  # fmt: skip
        raise AdpruneError(
            f"{path}: frontier must list distinct prune counts in 1..100 (one adp-inherit run each), "
            f"got {config.frontier!r}"
        )
    if not (_whole(config.finetune_epochs) and 1 <= config.finetune_epochs <= 10_000):
        raise AdpruneError(
            f"{path}: finetune_epochs must be a whole number in 1..10000, got {config.finetune_epochs!r}"
        )
    lr = config.finetune_lr
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr <= 100):
        raise AdpruneError(f"{path}: finetune_lr must be a number in (0, 100] or null, got {lr!r}")
    base = base_train_config(config, "unused", 0)
    if not isinstance(config.early_k, list) or not all(
        _whole(k) and 1 <= k < base.epochs for k in config.early_k
    ):
        raise AdpruneError(
            f"{path}: early_k must list epochs in 1..{base.epochs - 1}, got {config.early_k!r}"
        )


def base_train_config(config: BenchConfig, out: str | Path, seed: int) -> TrainConfig:
    """The shared training options of `config` for one run in `out` with `seed`, checked."""
    options = {k: v for k, v in config.train.items() if k not in RUN_ONLY_OPTIONS}
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise AdpruneError(f"bench '{config.name}': unknown training options {unknown}")
    full = {**dataclasses.asdict(TrainConfig(out="")), **options, "out": str(out), "seed": seed}
    full.update(overwrite=True, progress=False, report=False, tensorboard=False)
    return TrainConfig(**validate_config(full, f"bench '{config.name}' train options"))
