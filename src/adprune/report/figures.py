"""The derived figures every table shows, defined once: wall times, reduction factors, accuracy deltas.

`compare`, the bench and the HTML report all read them from here, so the same run gives the same
figure in every table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def training_wall_s(summary: Mapping[str, Any]) -> float:
    """Seconds spent producing the model: training, pruning and the validation that decisions in
    training read, without the test evaluation (which only measures the model and depends on how
    often and on how much data it runs)."""
    wall = summary["wall_s"]
    return sum(float(wall.get(key, 0.0)) for key in ("train", "prune", "val"))


def total_wall_s(summary: Mapping[str, Any]) -> float:
    """Seconds of the whole run: training, pruning and evaluation."""
    return float(sum(summary["wall_s"].values()))


def times_fewer(base: float | None, value: float | None) -> float | None:
    """How many times smaller `value` is than `base` (`base / value`: 4.0 is four times cheaper), or
    None when either is missing or `value` is zero."""
    if base is None or not value:
        return None
    return base / value


def accuracy_delta_pts(base_acc: float | None, acc: float | None) -> float | None:
    """`acc - base_acc` in percentage points (accuracies are fractions in [0, 1]); None when either
    was not measured (a run still before its first test evaluation)."""
    if base_acc is None or acc is None:
        return None
    return 100 * (acc - base_acc)


def rows_by_method(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """A bench's rows grouped by the method they belong to (`family`, else `method`), in table order:
    on a frontier one method has a row per prune count."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row.get("family") or row.get("method")), []).append(row)
    return grouped
