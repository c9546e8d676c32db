"""`adprune bench`: ADP beside the dense baseline and the peer pruning methods, on one model and budget.

A bench configuration (JSON) names the shared training options and the methods. Every method is a
`train()` run of its own in `runs_dir/<method>/seed-<n>`, all in this process one after another, so
every figure in the result table is read from a run's own `summary.json` (written from its ledger).
The peer methods are matched to `adp-inherit`'s outcome of the same seed, so it runs first:

- `dense`: the full network for the whole budget.
- `adp-inherit` / `adp-reinit`: ADP pruning in training, weights kept / re-initialised at each prune.
- `adp-early-k`: one ADP prune after epoch k (for each k in `early_k`), weights kept.
- `uniform`: every layer shrunk by one factor to `adp-inherit`'s final parameter count, trained for
  the whole budget.
- `slimming`: Network Slimming: L1 on BatchNorm scales until `adp-inherit`'s last prune epoch, then
  one global BN-scale prune to `adp-inherit`'s parameter count, fine-tuned to the end of the budget.
- `l1-filter`: L1-norm filter pruning to `adp-inherit`'s widths after the same epochs.

Finished runs are reused and interrupted ones resumed, so a bench that crashed continues where it
stopped when run again.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write_bytes, atomic_write_json, build_dense, read_arch
from .compare import human_number
from .config_check import validate_config
from .errors import AdpruneError
from .groups import build_graph, find_groups
from .rundir import CONFIG_FILE, SUMMARY_FILE, read_json
from .targets import fit_widths, parameters_at, uniform_widths
from .trainer import TrainConfig, print_now, train

METHODS = ("dense", "adp-inherit", "adp-reinit", "adp-early-k", "uniform", "slimming", "l1-filter")
# Horowitz, "Computing's energy problem", ISSCC 2014: 45 nm, 32-bit float.
PJ_PER_MULTIPLY, PJ_PER_ADD = 3.7, 0.9
ENERGY_ESTIMATE_NOTE = (
    "energy estimate = training MACs (train FLOPs / 2) x (3.7 pJ multiply + 0.9 pJ add), 32-bit float at "
    "45 nm (Horowitz, ISSCC 2014): arithmetic only, no memory traffic; an estimate, not a measurement"
)
_RUN_ONLY_OPTIONS = ("out", "overwrite", "progress", "report", "tensorboard")


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


def estimated_energy_j(train_flops: float) -> float:
    """The 45 nm arithmetic energy, in joules, of `train_flops` floating-point operations (2 per MAC)."""
    return train_flops / 2 * (PJ_PER_MULTIPLY + PJ_PER_ADD) * 1e-12


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
    base = base_train_config(config, "unused", 0)
    if not isinstance(config.early_k, list) or not all(
        _whole(k) and 1 <= k < base.epochs for k in config.early_k
    ):
        raise AdpruneError(
            f"{path}: early_k must list epochs in 1..{base.epochs - 1}, got {config.early_k!r}"
        )


def base_train_config(config: BenchConfig, out: str | Path, seed: int) -> TrainConfig:
    """The shared training options of `config` for one run in `out` with `seed`, checked."""
    options = {k: v for k, v in config.train.items() if k not in _RUN_ONLY_OPTIONS}
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise AdpruneError(f"bench '{config.name}': unknown training options {unknown}")
    full = {**dataclasses.asdict(TrainConfig(out="")), **options, "out": str(out), "seed": seed}
    full.update(overwrite=True, progress=False, report=False, tensorboard=False)
    return TrainConfig(**validate_config(full, f"bench '{config.name}' train options"))


def _adp_outcome(summary: dict[str, Any], method: str) -> tuple[int, list[dict[str, Any]]]:
    prunes = summary["prunes"]
    if not prunes:
        raise AdpruneError(
            f"adp-inherit did not prune in this budget, so {method} has no parameter count or widths to "
            "match: give the bench more epochs, or a lower --tol / --patience"
        )
    return summary["params"], prunes


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

    if method == "dense":
        return [make("dense", prune="none", prune_at=None)]
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

        return [make("uniform", prune="none", prune_at=None, initial_widths=widths)]
    if method == "slimming":
        slim = make(
            "slimming", prune="adp", importance="bn_scale", bn_l1=config.slimming_l1, max_prunes=1,
            target_params=lambda: _adp_outcome(adp_summary(), "slimming")[0],
            prune_at=lambda: [_adp_outcome(adp_summary(), "slimming")[1][-1]["epoch"]],
        )  # fmt: skip
        return [slim]

    def schedule() -> dict[str, dict[str, int]]:
        _, prunes = _adp_outcome(adp_summary(), "l1-filter")
        return {str(p["epoch"]): p["widths_after"] for p in prunes}

    return [make("l1-filter", prune="adp", importance="l1", width_schedule=schedule)]


def _comparable(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in _RUN_ONLY_OPTIONS}


def run_once(config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """The summary of the run `config` describes: reused when finished with the same options, resumed
    when interrupted, else trained from scratch (replacing a run made with other options)."""
    out = Path(config.out)
    saved = None
    if (out / CONFIG_FILE).exists():
        try:
            options = validate_config(read_json(out / CONFIG_FILE), out / CONFIG_FILE)
            saved = _comparable(TrainConfig(**options))
        except AdpruneError:
            saved = None
    if saved == _comparable(config):
        if (out / SUMMARY_FILE).exists():
            log(f"reusing the finished run {out}")
            return read_json(out / SUMMARY_FILE)
        log(f"resuming {out}")
        return train(config, log, resume=True)
    log(f"training {out}")
    return train(config, log)


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else statistics.fmean(values)


def bench_row(method: str, runs: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One table row from the summaries of one method's runs (one per seed): means, and the accuracy's
    sample standard deviation when there are several seeds."""
    summaries = [s for _, s in runs]
    accuracies = [s["test_acc"] for s in summaries]
    flops = [s["train_flops_total"] for s in summaries]
    row = {
        "method": method,
        "seeds": len(runs),
        "test_acc": statistics.fmean(accuracies),
        "test_acc_std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
        "params": statistics.fmean(s["params"] for s in summaries),
        "macs": statistics.fmean(s["macs"] for s in summaries),
        "train_flops_total": statistics.fmean(flops),
        "wall_s": statistics.fmean(s["wall_s"]["train"] for s in summaries),
        "energy_j": _mean([s["energy_j"] for s in summaries]),
        "energy_est_j": statistics.fmean(estimated_energy_j(f) for f in flops),
        "prune_epochs": [[p["epoch"] for p in s["prunes"]] for s in summaries],
        "runs": [run for run, _ in runs],
    }
    return row


RATIO_KEYS = ("params", "macs", "train_flops_total", "wall_s", "energy_j", "energy_est_j")


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add to every row `<key>_x` = dense's figure / the row's (times fewer) and `acc_delta_pts`,
    when a `dense` row exists; missing figures give None."""
    dense = next((r for r in rows if r["method"] == "dense"), None)
    if dense is None:
        return
    for row in rows:
        row["acc_delta_pts"] = 100 * (row["test_acc"] - dense["test_acc"])
        for key in RATIO_KEYS:
            base, value = dense[key], row[key]
            row[f"{key}_x"] = base / value if base is not None and value else None


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table with a header paragraph and notes."""
    header = ("method", "test acc", "Δ acc (pts)", "params", "x", "MACs", "x", "train FLOPs", "x",
              "train wall s", "x", "energy J (measured)", "energy J (estimate)", "x",
              "prunes after epoch")  # fmt: skip
    lines = [f"# Bench {result['name']}", "", result.get("description", ""), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in result["rows"]:
        std = r["test_acc_std"]
        acc = f"{100 * r['test_acc']:.2f}%" + ("" if std is None else f" ± {100 * std:.2f}")
        cells = (
            r["method"], acc, _cell(r.get("acc_delta_pts"), "+.2f"),
            human_number(r["params"]), _cell(r.get("params_x"), ".2f"),
            human_number(r["macs"]), _cell(r.get("macs_x"), ".2f"),
            human_number(r["train_flops_total"]), _cell(r.get("train_flops_total_x"), ".2f"),
            f"{r['wall_s']:.0f}", _cell(r.get("wall_s_x"), ".2f"),
            _cell(r["energy_j"], ".0f"), _cell(r["energy_est_j"], ".2f"),
            _cell(r.get("energy_est_j_x"), ".2f"),
            "; ".join(",".join(map(str, e)) or "-" for e in r["prune_epochs"]),
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    env = result["environment"]
    lines += [
        "",
        f"x = dense's figure / the method's (times fewer; higher is cheaper). Test accuracy: mean over "
        f"{result['seeds']} seed(s), ± sample standard deviation. Wall time: training only, all methods "
        f"in one process one after another, {env['threads']} threads on {env['device']} ({env['machine']}).",
        f"Measured energy: {env['energy_source'] or 'no counter readable on this machine (n/a)'}.",
        ENERGY_ESTIMATE_NOTE + ".",
    ]
    lines += [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo where readable, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _environment(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    device = summaries[0]["device"] if summaries else "cpu"
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name()
    return {
        "device": device, "machine": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(),
        "energy_source": summaries[0]["energy_source"] if summaries else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


def _order(methods: Sequence[str]) -> list[str]:
    """Methods in run order: adp-inherit first among the methods matched to it."""
    return sorted(set(methods), key=METHODS.index)


def run_bench(
    config: BenchConfig,
    runs_dir: str | Path,
    results_dir: str | Path,
    log: Callable[[str], None] = print_now,
) -> dict[str, Any]:
    """Run every method of `config` for every seed, write `<results_dir>/<name>.json` and `.md`, and
    return the result (`{"name", "config", "environment", "seeds", "rows", "notes"}`).

    Methods matched to adp-inherit (uniform, slimming, l1-filter) make it run too. The result files
    are written after every finished run, so a partial bench still leaves a table.
    """
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    methods = _order(config.methods)
    needs_adp = {"uniform", "slimming", "l1-filter"} & set(methods)
    run_methods = _order([*methods, "adp-inherit"]) if needs_adp else methods
    shown = [name for method in methods for name, _ in method_configs(config, method, runs_dir, 0)]
    done: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    result: dict[str, Any] = {}
    for seed in range(config.seeds):
        for method in run_methods:
            for name, build in method_configs(config, method, runs_dir, seed):
                train_config = build()
                log(f"bench {config.name}: {name}, seed {seed}")
                done.setdefault(name, []).append((train_config.out, run_once(train_config, log)))
                result = _write_result(config, done, [n for n in shown if n in done], results_dir)
    return result


def _write_result(
    config: BenchConfig, done: dict[str, list], shown: Sequence[str], results_dir: Path
) -> dict[str, Any]:
    rows = [bench_row(name, done[name]) for name in shown]
    add_ratios(rows)
    summaries = [s for name in shown for _, s in done[name]]
    notes = [] if any(r["method"] == "dense" for r in rows) else ["no dense row: ratios are left out"]
    result = {
        "name": config.name, "description": config.description, "config": dataclasses.asdict(config),
        "environment": _environment(summaries), "seeds": config.seeds, "rows": rows, "notes": notes,
    }  # fmt: skip
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results_dir / f"{config.name}.json", result)
    atomic_write_bytes(results_dir / f"{config.name}.md", format_markdown(result).encode("utf-8"))
    return result
