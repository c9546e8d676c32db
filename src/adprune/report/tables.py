"""The tables of the HTML report that describe one run: its summary, its prunes, its architecture."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .compare import human_number, percent_text
from .inputs import Run


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """An HTML table; cells are escaped, and a cell given as ('text', 'exact') gets a tooltip."""

    def cell(value: Any, tag: str) -> str:
        if isinstance(value, tuple):
            return f'<{tag} title="{html.escape(value[1])}">{html.escape(value[0])}</{tag}>'
        return f"<{tag}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def compact(value: float | int | None) -> str | tuple[str, str]:
    """A compact number with its exact value as a tooltip, or 'n/a'."""
    if value is None:
        return "n/a"
    return (human_number(value), f"{value:,}")


def architecture_table(layers: Sequence[str], initial: dict[str, int], final: dict[str, int]) -> str:
    """Initial and final width of every layer, folded away for long networks."""
    rows = [
        (layer, f"{initial[layer]:,}", f"{final[layer]:,}", f"{100 * final[layer] / initial[layer]:.1f}%")
        for layer in layers
        if layer in initial and layer in final and initial[layer]
    ]
    total_initial = sum(initial.get(layer, 0) for layer in layers)
    total_final = sum(final.get(layer, 0) for layer in layers)
    if total_initial:
        rows.append(
            (
                "all layers",
                f"{total_initial:,}",
                f"{total_final:,}",
                f"{100 * total_final / total_initial:.1f}%",
            )
        )
    table = html_table(("layer", "initial width", "final width", "share kept"), rows, "numeric")
    opened = " open" if len(layers) <= 20 else ""
    return f"<details{opened}><summary>Final architecture ({len(layers)} layers)</summary>{table}</details>"


def summary_table(run: Run, s: dict[str, Any]) -> str:
    """The run's status, accuracy, costs, wall time, energy, prunes and device."""
    wall = s["wall_s"]
    prunes = [p["epoch"] for p in s.get("prunes") or []]
    energy = "not measured" if s.get("energy_j") is None else f"{s['energy_j']:,.1f} J"
    if s.get("energy_source"):
        energy += f" ({s['energy_source']})"
    rollbacks = ", ".join(
        f"after epoch {r['from_epoch']} to epoch {r['to_epoch']}" for r in s.get("rollbacks") or []
    )
    rows = [
        ("status", f"PARTIAL: {run.partial}" if run.partial else "finished"),
        ("epochs logged", f"{len(run.records)} of {s.get('epochs') or '?'}"),
        ("test accuracy", percent_text(s["test_acc"])),
        ("test loss", "n/a" if s["test_loss"] is None else f"{s['test_loss']:.4f}"),
        ("parameters", _change(s["params_initial"], s["params"])),
        ("inference MACs per sample", _change(s["macs_initial"], s["macs"])),
        ("training FLOPs, total", f"{s['train_flops_total']:,}"),
        (
            "wall time",
            f"{sum(wall.values()):,.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in wall.items()) + ")",
        ),
        ("energy", energy),
        ("prunes", "after epoch " + ", ".join(map(str, prunes)) if prunes else "none"),
        ("rolled back", rollbacks or "none"),
        ("device", str(s.get("device") or "unknown")),
    ]
    start = s.get("started_from")
    if start:
        rows.insert(1, ("started from", _start_text(start)))
    return html_table(("", "value"), rows, "summary")


def _start_text(start: dict[str, Any]) -> str:
    """The run a run started from, and that its totals include that run's cost."""
    epochs = start.get("epochs")
    trained = f"trained {epochs} epochs" if epochs else "a finished run"
    return (
        f"{start['run']} ({trained}, test accuracy {percent_text(start.get('test_acc'))}); the totals below "
        f"include its {start['train_flops_total']:,} training FLOPs and its wall time"
    )


def _change(initial: int, final: int) -> str:
    if initial == final:
        return f"{final:,} (unchanged)"
    return f"{final:,} (from {initial:,}, {initial / final:.2f}x fewer)"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _drop(before: float | None, after: float | None) -> str:
    return "n/a" if before is None or after is None else f"{100 * (before - after):+.1f}"


def prune_table(records: Sequence[dict[str, Any]]) -> str:
    """Every prune whose recovery ended: training accuracy of the epoch that decided it against the
    lowest of the epochs after it, validation accuracy at the decision and after recovery, and
    whether the guard rolled it back. Empty when no record holds a prune check."""
    checks = [check for record in records for check in record.get("prune_checks") or []]
    if not checks:
        return ""
    rows = [
        (
            str(c["decided"]), "-" if c.get("cut") is None else str(c["cut"]), _pct(c["train_acc_before"]),
            _pct(c.get("train_acc_after")), _drop(c["train_acc_before"], c.get("train_acc_after")),
            _pct(c.get("val_acc_before")), _pct(c.get("val_acc_after")),
            _drop(c.get("val_acc_before"), c.get("val_acc_after")),
            "rolled back" if c.get("rolled_back") else "kept",
        )
        for c in checks
    ]  # fmt: skip
    header = ("decided after epoch", "cut after epoch", "train acc before", "lowest after", "drop (pts)",
              "val acc before", "val acc after", "drop (pts)", "outcome")  # fmt: skip
    note = (
        "<p class='meta'>Training accuracy before: the epoch whose end decided the prune; lowest after: "
        "the lowest of the epochs from the one after the decision to the first epoch of the pruned "
        "network. Validation accuracy (held out of training) at the decision and after recovery.</p>"
    )
    return f"<h3>Prunes</h3>{html_table(header, rows, 'numeric')}{note}"
