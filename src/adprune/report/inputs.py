"""Reading what a report shows: run directories (finished or still running) and bench result files.

Problems in the inputs do not stop the report: a run still in progress is PARTIAL with what it has
logged, and a metrics line that is not valid JSON is skipped with a warning naming file and line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from ..runs.rundir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, read_json

REQUIRED_KEYS = (
    "epoch", "train_loss", "test_loss", "test_acc", "density", "widths", "params", "macs",
    "train_flops_total", "wall_s",
)  # fmt: skip


class ReportWarning(UserWarning):
    """Something in the inputs that the report worked around; the message names the file."""


@dataclass
class Run:
    """What a run directory holds: its options, the epochs logged so far, its summary if finished.

    `warnings` lists what was skipped while reading; `partial` says why the run is incomplete
    (None for a finished run).
    """

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    partial: str | None = None


@dataclass
class Bench:
    """A bench result file: its name, options and one row per method."""

    path: Path
    name: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]


def read_metrics_checked(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The epoch records of a `metrics.jsonl` and one warning per line skipped, naming file and line.

    A line is skipped when it is not a JSON object or lacks a field the report needs.
    """
    records, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not valid JSON ({exc.msg}), line skipped")
            continue
        missing = [k for k in REQUIRED_KEYS if k not in record] if isinstance(record, dict) else ["all"]
        if missing:
            problems.append(f"{path}:{number}: lacks {', '.join(missing)}, line skipped")
            continue
        records.append(record)
    return records, problems


def _read_optional(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The JSON object at `path`; None if the file is missing, or unreadable (with a warning)."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except AdpruneError as exc:
        problems.append(f"{exc}; file ignored")
        return None


def _partial_reason(
    config: dict[str, Any], records: list[dict[str, Any]], summary: dict | None
) -> str | None:
    reasons = []
    planned = (summary or config).get("epochs")
    done = records[-1]["epoch"] if records else 0
    if planned and done < planned:
        reasons.append(f"{done} of {planned} epochs logged")
    if summary is None:
        reasons.append(f"no {SUMMARY_FILE} yet")
    return ", ".join(reasons) or None


def load_run(path: str | Path) -> Run:
    """Read a run directory written by `adprune train`, finished or still running.

    Raises AdpruneError when `path` holds no `metrics.jsonl`.
    """
    path = Path(path)
    if not (path / METRICS_FILE).is_file():
        raise AdpruneError(
            f"{path} is not a run directory (no {METRICS_FILE}): pass a directory written by "
            "'adprune train' or a bench result .json file"
        )
    records, problems = read_metrics_checked(path / METRICS_FILE)
    if not (path / CONFIG_FILE).is_file():
        problems.append(f"{path / CONFIG_FILE} missing: the run's options are unknown")
    config = _read_optional(path / CONFIG_FILE, problems)
    summary = _read_optional(path / SUMMARY_FILE, problems)
    return Run(
        path, config or {}, records, summary, problems, _partial_reason(config or {}, records, summary)
    )


def load_bench(path: str | Path) -> Bench:
    """Read a bench result file (`{"name", "config", "rows": [{"method", "test_acc", ...}]}`).

    Raises AdpruneError when the file is not JSON or has no list of row objects.
    """
    path = Path(path)
    data = read_json(path)
    rows = data.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AdpruneError(f"{path} is not a bench result: it needs a 'rows' list of objects")
    return Bench(path, str(data.get("name", path.stem)), data.get("config") or {}, rows)


def load_input(path: str | Path) -> Run | Bench:
    """A run directory (or one of its files) as a `Run`, any other .json file as a `Bench`."""
    path = Path(path)
    if path.is_file() and path.name in (METRICS_FILE, SUMMARY_FILE, CONFIG_FILE):
        path = path.parent
    if path.is_file() and path.suffix == ".json":
        return load_bench(path)
    if not path.exists():
        raise AdpruneError(f"{path} does not exist: pass a run directory or a bench result .json file")
    return load_run(path)


def run_summary(run: Run) -> dict[str, Any]:
    """The run's `summary.json`, or for a partial run the same fields from its last logged epoch."""
    if run.summary is not None:
        return {**run.summary, "run": str(run.path)}
    first, last = run.records[0], run.records[-1]
    return {
        **{k: run.config.get(k) for k in ("model", "dataset", "prune", "mode", "epochs")},
        "run": str(run.path),
        **_last_test(run.records),
        "params_initial": first["params"],
        "params": last["params"],
        "macs_initial": first["macs"],
        "macs": last["macs"],
        "train_flops_total": last["train_flops_total"],
        "wall_s": {k: sum(r["wall_s"].get(k, 0.0) for r in run.records) for k in last["wall_s"]},
        "energy_j": last.get("energy_j"),
        "energy_source": None,
        "device": run.config.get("resolved_device"),
        "prunes": [{"epoch": r["epoch"]} for r in run.records if r.get("pruned")],
    }


def _last_test(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The test accuracy and loss of the latest epoch that evaluated the test set (None before any)."""
    tested = [r for r in records if r.get("test_acc") is not None]
    last = tested[-1] if tested else {"test_acc": None, "test_loss": None}
    return {"test_acc": last["test_acc"], "test_loss": last["test_loss"]}


def layer_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every channel group named in the records, in network order."""
    seen: dict[str, None] = {}
    for r in records:
        seen.update(dict.fromkeys(r["widths"]))
    return list(seen)


def width_stages(records: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, int]]]:
    """The widths at the start and after each prune, each with a label."""
    stages = [(f"initial (epoch {records[0]['epoch']})", records[0]["widths"])]
    stages += [
        (f"after prune at end of epoch {r['epoch']}", r.get("widths_after", r["widths"]))
        for r in records
        if r.get("pruned")
    ]
    return stages


def unpruned_flops(records: Sequence[dict[str, Any]]) -> list[int] | None:
    """Cumulative training FLOPs had every epoch cost what the first logged one did (before any prune)."""
    first = records[0].get("train_flops")
    return None if first is None else [first * r["epoch"] for r in records]


def density_grid(
    records: Sequence[dict[str, Any]], layers: Sequence[str]
) -> tuple[list[int], list[list[float]], list[tuple[str, list[float]]]]:
    """The heatmap's data: the epochs from the first record to the last, each layer's density per
    epoch, and the summary rows (spread of the layer densities, share of near-dead channels, share of
    channels whose fate under the plan changed: the ranking trigger's signal) where the records have
    them; NaN where an epoch or a value is missing."""
    at = {r["epoch"]: r for r in records}
    span = list(range(records[0]["epoch"], records[-1]["epoch"] + 1))
    nan = float("nan")
    density = [[at.get(e, {}).get("density", {}).get(layer, nan) for e in span] for layer in layers]
    rows = (("density_spread", "spread across layers"), ("dead_share", "share of channels < 0.02"),
            ("mask_change", "channels whose fate changed"))  # fmt: skip
    summary = [
        (label, [nan if at.get(e, {}).get(key) is None else at[e][key] for e in span])
        for key, label in rows
        if any(key in r for r in records)
    ]
    return span, density, summary
