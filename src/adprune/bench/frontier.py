"""How far each method of a bench goes: its largest compression within a given accuracy loss, the
methods side by side at each prune count, and the figure of accuracy against every cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..report import plots
from ..report.compare import human_number
from ..report.figures import rows_by_method

REACH_POINTS = (1.0, 3.0)
"""The accuracy losses (points below dense) within which `reach` names each method's largest compression."""


def _delta(row: dict[str, Any]) -> float:
    """The row's accuracy against dense in points; -inf when unmeasured (never within any loss)."""
    delta = row.get("acc_delta_pts")
    return -math.inf if delta is None else delta


def reach(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any] | None]]:
    """For every method but dense and every loss in `REACH_POINTS`: the row with the largest
    parameter reduction whose mean test accuracy is at most that many points below dense's
    (`{"row", "params_x", "macs_x", "acc_delta_pts"}`), or None when no row of it is. Rows need
    `add_ratios` first."""
    found: dict[str, dict[str, dict[str, Any] | None]] = {}
    for family, members in rows_by_method(rows).items():
        if family == "dense":
            continue
        found[family] = {}
        for points in REACH_POINTS:
            within = [r for r in members if _delta(r) >= -points]
            best = max(within, key=lambda r: r["params_x"] or 0.0, default=None)
            found[family][f"{points:g}"] = None if best is None else {
                "row": best["method"], "params_x": best["params_x"], "macs_x": best["macs_x"],
                "acc_delta_pts": best["acc_delta_pts"],
            }  # fmt: skip
    return found


def reach_lines(result: dict[str, Any]) -> list[str]:
    """Markdown: each method's largest compression within each loss of `REACH_POINTS` (empty
    without a dense row)."""
    if not result.get("reach"):
        return []
    means = f"means over {result['seeds']} seeds"
    lines = ["", f"Largest compression within a loss of test accuracy ({means}, against dense):", ""]
    header = ["method", *(f"within {p:g} pt{'s' if p != 1 else ''}" for p in REACH_POINTS)]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for family, by_points in result["reach"].items():
        cells = [family]
        for points in REACH_POINTS:
            best = by_points.get(f"{points:g}")
            cells.append(
                "none"
                if best is None
                else f"{best['params_x']:.1f}x params, {best['macs_x']:.1f}x MACs "
                f"({best['row']}, {best['acc_delta_pts']:+.2f})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _acc(row: dict[str, Any]) -> str:
    std = row.get("test_acc_std")
    return f"{100 * row['test_acc']:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def level_lines(result: dict[str, Any]) -> list[str]:
    """Markdown: at each frontier prune count, every method's test accuracy (mean ± spread) beside
    adp-inherit's parameters (empty off a frontier)."""
    levels = sorted({r["level"] for r in result["rows"] if r.get("level") is not None})
    if not levels:
        return []
    grouped = rows_by_method(result["rows"])
    families = [f for f, members in grouped.items() if any(r.get("level") for r in members)]
    header = ["prunes", "params (adp-inherit)", "x", *families]
    title = "The frontier: test accuracy (%) of each method at adp-inherit's size after each prune count:"
    lines = ["", title, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for level in levels:
        at = {r.get("family"): r for r in result["rows"] if r.get("level") == level}
        adp = at.get("adp-inherit")
        size = ["n/a", "n/a"] if adp is None else [human_number(adp["params"]), _ratio(adp.get("params_x"))]
        accuracies = [_acc(at[f]) if f in at else "n/a" for f in families]
        lines.append("| " + " | ".join([str(level), *size, *accuracies]) + " |")
    return lines


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def frontier_png(result: dict[str, Any]) -> bytes | None:
    """The figure of test accuracy against parameters, MACs and training FLOPs, one line per method
    with its seed spread (None without rows)."""
    return plots.frontier(
        plots.frontier_lines(result["rows"]), f"Bench {result['name']}: test accuracy against cost"
    )
