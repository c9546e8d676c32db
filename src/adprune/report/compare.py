"""Side-by-side table of finished runs, with every cost as a ratio to the first run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs.rundir import SUMMARY_FILE, read_json
from .figures import accuracy_delta_pts, times_fewer, total_wall_s, training_wall_s


def human_number(value: float) -> str:
    """`value` with a k/M/G/T suffix and two decimals, e.g. 1.23M."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def load_summaries(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The `summary.json` of each run, with its directory under the key 'run'."""
    return [{**read_json(Path(d) / SUMMARY_FILE), "run": str(d)} for d in run_dirs]


def comparison_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: accuracy, costs, and each cost's reduction factor against the first run.

    Factors and deltas are those of `figures`: a factor is `first / this`, so 4.0 means four times
    fewer (None where it cannot be computed); accuracy is compared as a difference in percentage
    points; `wall_s` is the training wall time (training and pruning, no evaluation) and
    `wall_total_s` the whole run's.
    """
    base = summaries[0]
    rows = []
    for s in summaries:
        rows.append(
            {
                "run": s["run"],
                "test_acc": s["test_acc"],
                "acc_delta_pts": accuracy_delta_pts(base["test_acc"], s["test_acc"]),
                "params": s["params"],
                "params_x": times_fewer(base["params"], s["params"]),
                "macs": s["macs"],
                "macs_x": times_fewer(base["macs"], s["macs"]),
                "train_flops": s["train_flops_total"],
                "train_flops_x": times_fewer(base["train_flops_total"], s["train_flops_total"]),
                "wall_s": training_wall_s(s),
                "wall_x": times_fewer(training_wall_s(base), training_wall_s(s)),
                "wall_total_s": total_wall_s(s),
                "energy_j": s.get("energy_j"),
            }
        )
    return rows


def factor_text(value: float | None) -> str:
    """A reduction factor with two decimals, or n/a."""
    return "n/a" if value is None else f"{value:.2f}"


def percent_text(fraction: float | None) -> str:
    """An accuracy (a fraction) in percent with two decimals, or n/a."""
    return "n/a" if fraction is None else f"{100 * fraction:.2f}%"


def delta_text(points: float | None) -> str:
    """A signed difference in percentage points with two decimals, or n/a."""
    return "n/a" if points is None else f"{points:+.2f}"


def format_table(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """A fixed-width text table of `comparison_rows` output."""
    header = (
        "run",
        "test acc",
        "Δ acc",
        "params",
        "x",
        "MACs",
        "x",
        "train FLOPs",
        "x",
        "train wall s",
        "x",
        "energy J",
    )
    lines = [
        [
            Path(r["run"]).name,
            percent_text(r["test_acc"]),
            delta_text(r["acc_delta_pts"]),
            human_number(r["params"]),
            factor_text(r["params_x"]),
            human_number(r["macs"]),
            factor_text(r["macs_x"]),
            human_number(r["train_flops"]),
            factor_text(r["train_flops_x"]),
            f"{r['wall_s']:.0f}",
            factor_text(r["wall_x"]),
            "n/a" if r["energy_j"] is None else f"{r['energy_j']:.0f}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" if i else f"{{:<{w}}}" for i, w in enumerate(widths))
    out = [title] if title else []
    out += [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    out.append(
        "x = reduction factor against the first run (higher is cheaper); Δ acc in percentage points; "
        "train wall s = training and pruning, without evaluation."
    )
    return "\n".join(out)
