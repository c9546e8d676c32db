"""The bench's result table: one row per method from its runs' summaries, ratios against dense."""

from __future__ import annotations

import datetime
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..report.compare import human_number
from ..report.figures import accuracy_delta_pts, times_fewer, training_wall_s
from .frontier import level_lines, reach_lines

# Horowitz, "Computing's energy problem", ISSCC 2014: 45 nm, 32-bit float.
PJ_PER_MULTIPLY, PJ_PER_ADD = 3.7, 0.9
ENERGY_ESTIMATE_NOTE = (
    "energy estimate = training MACs (train FLOPs / 2) x (3.7 pJ multiply + 0.9 pJ add), 32-bit float at "
    "45 nm (Horowitz, ISSCC 2014): arithmetic only, no memory traffic; an estimate, not a measurement"
)


def estimated_energy_j(train_flops: float) -> float:
    """The 45 nm arithmetic energy, in joules, of `train_flops` floating-point operations (2 per MAC)."""
    return train_flops / 2 * (PJ_PER_MULTIPLY + PJ_PER_ADD) * 1e-12


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else statistics.fmean(values)


def worst_prune_drop_pts(summaries: Sequence[dict[str, Any]]) -> float | None:
    """The largest training-accuracy drop of any prune of any of the runs, in points: the epoch that
    decided the prune against the lowest epoch after it (see `train.guard`); None without prunes."""
    drops = [
        100 * (check["train_acc_before"] - check["train_acc_after"])
        for s in summaries
        for check in s.get("prune_checks") or []
        if check.get("train_acc_after") is not None
    ]
    return max(drops) if drops else None


def bench_row(
    name: str, runs: Sequence[tuple[str, dict[str, Any]]], family: str | None = None, level: int | None = None
) -> dict[str, Any]:
    """One table row `name` from the summaries of one method's runs (one per seed): means, and the
    accuracy's sample standard deviation when there are several seeds. `family` is the method the row
    belongs to (default: `name`) and `level` its prune count on a frontier (None off one). `wall_s`
    is the training wall time of `report.figures.training_wall_s` (training, pruning and the
    validation decisions read, no test evaluation). `worst_prune_drop_pts` is `worst_prune_drop_pts`
    over the seeds, `rollbacks` the number of prunes the accuracy guard rolled back."""
    summaries = [s for _, s in runs]
    accuracies = [s["test_acc"] for s in summaries]
    flops = [s["train_flops_total"] for s in summaries]
    row = {
        "method": name,
        "family": family or name,
        "level": level,
        "seeds": len(runs),
        "test_acc": statistics.fmean(accuracies),
        "test_acc_std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
        "test_accs": accuracies,
        "params": statistics.fmean(s["params"] for s in summaries),
        "macs": statistics.fmean(s["macs"] for s in summaries),
        "train_flops_total": statistics.fmean(flops),
        "wall_s": statistics.fmean(training_wall_s(s) for s in summaries),
        "energy_j": _mean([s["energy_j"] for s in summaries]),
        "energy_est_j": statistics.fmean(estimated_energy_j(f) for f in flops),
        "prune_epochs": [[p["epoch"] for p in s["prunes"]] for s in summaries],
        "worst_prune_drop_pts": worst_prune_drop_pts(summaries),
        "rollbacks": sum(len(s.get("rollbacks") or []) for s in summaries),
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
        row["acc_delta_pts"] = accuracy_delta_pts(dense["test_acc"], row["test_acc"])
        for key in RATIO_KEYS:
            row[f"{key}_x"] = times_fewer(dense[key], row[key])


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table with a header paragraph and notes."""
    header = ("method", "test acc", "Δ acc (pts)", "params", "x", "MACs", "x", "train FLOPs", "x",
              "train wall s", "x", "energy J (measured)", "energy J (estimate)", "x",
              "prunes after epoch", "worst prune drop (train pts)", "rolled back")  # fmt: skip
    lines = [f"# Bench {result['name']}", "", result.get("description", ""), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in result["rows"]:
        std = r["test_acc_std"]
        acc = f"{100 * r['test_acc']:.2f}%" + ("" if std is None else f" ± {100 * std:.2f}")
        if r["seeds"] != result["seeds"]:
            acc += f" ({r['seeds']} of {result['seeds']} seeds)"
        cells = (
            r["method"], acc, _cell(r.get("acc_delta_pts"), "+.2f"),
            human_number(r["params"]), _cell(r.get("params_x"), ".2f"),
            human_number(r["macs"]), _cell(r.get("macs_x"), ".2f"),
            human_number(r["train_flops_total"]), _cell(r.get("train_flops_total_x"), ".2f"),
            f"{r['wall_s']:.0f}", _cell(r.get("wall_s_x"), ".2f"),
            _cell(r["energy_j"], ".0f"), _cell(r["energy_est_j"], ".2f"),
            _cell(r.get("energy_est_j_x"), ".2f"),
            "; ".join(",".join(map(str, e)) or "-" for e in r["prune_epochs"]),
            _cell(r.get("worst_prune_drop_pts"), ".1f"), str(r.get("rollbacks", 0)),
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += level_lines(result) + reach_lines(result)
    if result["rows"]:
        caption = "Test accuracy against parameters, inference MACs and training FLOPs"
        lines += ["", f"![{caption}]({result['name']}.png)"]
    env = result["environment"]
    lines += [
        "",
        f"x = dense's figure / the method's (times fewer; higher is cheaper). Test accuracy: mean over "
        f"{result['seeds']} seed(s), ± sample standard deviation. Wall time: training, pruning and the "
        "validation the accuracy guard reads, without test evaluation; all methods in one process one "
        f"after another, {env['threads']} threads on {env['device']} ({env['machine']}). Worst prune "
        "drop: the largest fall in training accuracy from the epoch that decided a prune to the lowest "
        "epoch after it, over all prunes and seeds.",
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


def environment(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    device = summaries[0]["device"] if summaries else "cpu"
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name()
    return {
        "device": device, "machine": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(),
        "energy_source": summaries[0]["energy_source"] if summaries else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
