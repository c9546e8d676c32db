"""A self-contained HTML report of run directories and bench result files.

`write_report` reads what each input holds, draws the figures of `adprune.plots`, and writes
`report.html` plus each figure as a PNG into one directory. The page embeds every figure as a
base64 `data:` URI and its style inline: it loads nothing from anywhere, so it can be mailed or
archived as one file.

Problems in the inputs do not stop the report: a run still in progress is reported as PARTIAL with
what it has logged, a metrics line that is not valid JSON is skipped, runs on different datasets are
still compared. Each such problem is listed at the top of the page and emitted as a `ReportWarning`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from ..runs.atomic import atomic_write_bytes
from . import plots
from .compare import comparison_rows, delta_text, factor_text, percent_text
from .inputs import (
    Bench,
    ReportWarning,
    Run,
    density_grid,
    layer_names,
    load_input,
    run_summary,
    unpruned_flops,
    width_stages,
)
from .tables import architecture_table, compact, html_table, prune_table, summary_table

REPORT_FILE = "report.html"
REPORT_SUBDIR = "report"
BENCH_COLUMNS = (
    "method", "test_acc", "test_acc_std", "params", "macs", "train_flops_total", "wall_s", "energy_j",
    "energy_est_j",
)  # fmt: skip


def _labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the directory name, with its parent where names repeat."""
    paths = [p.resolve() for p in paths]
    names = [p.name for p in paths]
    longer = [
        f"{p.parent.name}/{p.name}" if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)
    ]
    return [n if longer.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(longer)]


class _Page:
    """Collects the figures of the page (name -> PNG) while sections are rendered."""

    def __init__(self) -> None:
        self.figures: dict[str, bytes] = {}

    def figure(self, name: str, png: bytes, caption: str) -> str:
        self.figures[name] = png
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption)
        image = f'<img src="data:image/png;base64,{data}" alt="{alt}">'
        return f"<figure>{image}<figcaption>{alt}</figcaption></figure>"


def _pct_or_nan(fraction: float | None) -> float:
    """A fraction in percent; NaN (a gap in a curve) for an epoch that did not measure it."""
    return math.nan if fraction is None else 100 * fraction


def _run_figures(run: Run, prefix: str, page: _Page) -> str:
    records = run.records
    epochs = [r["epoch"] for r in records]
    prunes = [r["epoch"] for r in records if r.get("pruned")]
    layers = layer_names(records)
    span, density, summary = density_grid(records, layers)
    accuracy = [("test", [_pct_or_nan(r.get("test_acc")) for r in records])]
    if any(r.get("val_acc") is not None for r in records):
        accuracy.append(("validation", [_pct_or_nan(r.get("val_acc")) for r in records]))
    if all("train_acc" in r for r in records):
        accuracy.insert(0, ("train", [100 * r["train_acc"] for r in records]))
    test_loss = [math.nan if r.get("test_loss") is None else r["test_loss"] for r in records]
    loss = [("train", [r["train_loss"] for r in records]), ("test", test_loss)]
    stages = width_stages(records)
    widths = [(label, [w.get(layer, 0) for layer in layers]) for label, w in stages]
    return "".join(
        (
            page.figure(
                f"{prefix}curves.png",
                plots.training_curves(epochs, accuracy, loss, prunes),
                "Accuracy and loss per epoch; dashed lines mark prunes.",
            ),
            page.figure(
                f"{prefix}density.png",
                plots.density_heatmap(layers, span, density, prunes, summary),
                "Activation density of each layer's output per epoch (0 = all zeros, 1 = none); below "
                "the line, the spread of the layer densities (largest minus smallest), the share of "
                "near-dead channels (density under 0.02) and the share of channels whose fate under "
                "the plan changed since the epoch before (what the ranking trigger waits on).",
            ),
            page.figure(
                f"{prefix}widths.png",
                plots.width_bars(layers, widths),
                "Output channels of each layer at the start and after each prune.",
            ),
            architecture_table(layers, stages[0][1], stages[-1][1]),
            page.figure(
                f"{prefix}costs.png",
                plots.cost_curves(
                    epochs,
                    [r["params"] for r in records],
                    [r["macs"] for r in records],
                    [r["train_flops_total"] for r in records],
                    prunes,
                    unpruned_flops(records) if prunes else None,
                ),
                "Parameters, inference MACs per sample and cumulative training FLOPs per epoch.",
            ),
        )
    )


def _options(run: Run) -> dict[str, Any]:
    """The run's options, with the summary's values where it has them."""
    return {**run.config, **(run.summary or {})}


def _run_title(run: Run, label: str) -> str:
    c = _options(run)
    bits = [c.get("model"), c.get("dataset")]
    if c.get("prune"):
        bits.append(
            f"prune {c['prune']}" + (f" ({c['mode']})" if c.get("prune") != "none" and c.get("mode") else "")
        )
    detail = " · ".join(str(b) for b in bits if b)
    badge = ' <span class="partial">PARTIAL</span>' if run.partial else ""
    meta = f"{html.escape(detail)}<br>{html.escape(str(run.path))}"
    return f"<h2>Run {html.escape(label)}{badge}</h2><p class='meta'>{meta}</p>"


def _run_section(run: Run, label: str, prefix: str, page: _Page) -> str:
    head = _run_title(run, label)
    if not run.records:
        return f"<section>{head}<p>No epoch has finished yet: nothing to show.</p></section>"
    tables = summary_table(run, run_summary(run)) + prune_table(run.records)
    return f"<section>{head}{tables}{_run_figures(run, prefix, page)}</section>"


def _comparison_section(runs: Sequence[Run], labels: Sequence[str], page: _Page) -> str:
    rows = comparison_rows([run_summary(r) for r in runs])
    points = [
        plots.Point(label, r["test_acc"], params=r["params"], train_flops=r["train_flops"])
        for label, r in zip(labels, rows, strict=True)
        if r["test_acc"] is not None
    ]
    png = plots.tradeoff(points, "Runs compared: test accuracy against cost")
    table = html_table(
        ("run", "test acc", "Δ acc (pts)", "params", "×", "MACs", "×", "train FLOPs", "×", "train wall s",
         "×", "total wall s", "energy J", "status"),
        [
            (
                label, percent_text(r["test_acc"]), delta_text(r["acc_delta_pts"]), compact(r["params"]),
                factor_text(r["params_x"]), compact(r["macs"]), factor_text(r["macs_x"]),
                compact(r["train_flops"]), factor_text(r["train_flops_x"]), f"{r['wall_s']:,.1f}",
                factor_text(r["wall_x"]), f"{r['wall_total_s']:,.1f}",
                "n/a" if r["energy_j"] is None else f"{r['energy_j']:,.1f}",
                "PARTIAL" if run.partial else "finished",
            )
            for label, r, run in zip(labels, rows, runs, strict=True)
        ],
        "numeric",
    )  # fmt: skip
    note = (
        f"<p class='meta'>× = reduction factor against the first run, {html.escape(labels[0])} (higher is "
        "cheaper); Δ acc in percentage points; train wall s: training and pruning, total wall s: with "
        "evaluation. Hover a compact number for its exact value.</p>"
    )
    caption = "Test accuracy against parameters and training FLOPs."
    figure = "" if png is None else page.figure("compare-tradeoff.png", png, caption)
    return f"<section><h2>Comparison</h2>{figure}{table}{note}</section>"


def _bench_cell(key: str, value: Any) -> str | tuple[str, str]:
    if value is None:
        return "n/a"
    if key.startswith("test_acc") and isinstance(value, (int, float)):
        return f"{100 * value:.2f}%"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if isinstance(value, int) or abs(value) >= 1e4:
        return compact(value)
    return f"{value:.4g}"


def _bench_section(bench: Bench, prefix: str, page: _Page, problems: list[str]) -> str:
    for i, row in enumerate(bench.rows):
        if not isinstance(row.get("test_acc"), (int, float)):
            label = str(row.get("method", f"row {i + 1}"))
            problems.append(f"{bench.path}: row {label!r} has no test_acc, left off the plot")
    columns = [c for c in BENCH_COLUMNS if any(c in r for r in bench.rows)]
    columns += list(dict.fromkeys(k for r in bench.rows for k in r if k not in columns))
    table = html_table(columns, [[_bench_cell(c, r.get(c)) for c in columns] for r in bench.rows], "numeric")
    png = plots.frontier(plots.frontier_lines(bench.rows), f"Bench {bench.name}: test accuracy against cost")
    caption = f"Bench {bench.name}: test accuracy against parameters, inference MACs and training FLOPs."
    figure = "" if png is None else page.figure(f"{prefix}tradeoff.png", png, caption)
    config = html.escape(json.dumps(bench.config, sort_keys=True)) if bench.config else "no config recorded"
    return (
        f"<section><h2>Bench {html.escape(bench.name)}</h2><p class='meta'>{html.escape(str(bench.path))}"
        f"<br>{config}</p>{figure}{table}</section>"
    )


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1240px;margin:0 auto;
padding:16px 20px;color:#111;line-height:1.4}
h1{font-size:1.7em;margin-bottom:4px}h2{border-bottom:2px solid #444;padding-bottom:4px;margin-top:40px}
figure{margin:16px 0}figure img{width:100%;max-width:1200px;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444}.meta{color:#444;font-size:.92em;word-break:break-all}
table{border-collapse:collapse;margin:10px 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eee}
table.numeric td+td,table.summary td+td{text-align:right;font-variant-numeric:tabular-nums}
.partial{background:#111;color:#fff;padding:1px 8px;border-radius:3px;font-size:.7em;vertical-align:middle}
.warnings{border:2px solid #111;background:#f4f4f4;padding:8px 16px}
summary{font-weight:bold;font-size:1.15em;margin:12px 0;cursor:pointer}
"""


def _page(title: str, sources: Sequence[str], problems: Sequence[str], body: str) -> str:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sources)
    notes = ""
    if problems:
        notes = "<div class='warnings'><strong>Warnings</strong><ul>"
        notes += "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul></div>"
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='meta'>Generated from:</p><ul class='meta'>{items}</ul>{notes}{body}</body></html>\n"
    )


def _default_out(inputs: Sequence[Run | Bench]) -> Path:
    if len(inputs) == 1 and isinstance(inputs[0], Run):
        return inputs[0].path / REPORT_SUBDIR
    return Path(REPORT_SUBDIR)


def _run_problems(runs: Sequence[Run], labels: Sequence[str]) -> list[str]:
    """What was skipped while reading, which runs are partial, and whether datasets differ."""
    problems = [w for r in runs for w in r.warnings]
    for run in runs:
        if not run.records:
            problems.append(f"{run.path}: no epoch has finished yet; nothing to plot")
        elif run.partial:
            problems.append(f"{run.path} is a partial run ({run.partial}): showing what it has logged")
    datasets = {label: _options(r).get("dataset") for r, label in zip(runs, labels, strict=True)}
    if len({d for d in datasets.values() if d}) > 1:
        listed = ", ".join(f"{label}: {d}" for label, d in datasets.items())
        problems.append(f"the runs use different datasets ({listed}): their accuracies are not comparable")
    return problems


def write_report(paths: Sequence[str | Path], out_dir: str | Path | None = None) -> Path:
    """Write an HTML report of run directories and/or bench result files; return its path.

    Each run directory gets its summary, accuracy and loss curves, a density heatmap, widths before
    and after each prune, its final architecture and its cost curves. Two or more runs also get a
    comparison (accuracy against parameters and training FLOPs, costs as ratios to the first run).
    A bench result file gets its trade-off plot and table.

    Output: `report.html` and every figure as a PNG, in `out_dir`; by default `<run>/report/` for
    a single run directory and `./report/` otherwise. The HTML embeds the figures and needs
    nothing else. Problems that the report worked around (partial runs, skipped metrics lines,
    mixed datasets) are listed on the page and emitted as `ReportWarning`s. Raises AdpruneError
    for an input that is neither a run directory nor a bench file, or an output that cannot be
    written.
    """
    if not paths:
        raise AdpruneError("no input: pass one or more run directories or bench result .json files")
    inputs = [load_input(p) for p in paths]
    runs = [x for x in inputs if isinstance(x, Run)]
    labels = _labels([r.path for r in runs])
    problems = _run_problems(runs, labels)

    page = _Page()
    sections = []
    compared = [i for i, r in enumerate(runs) if r.records]
    if len(compared) >= 2:
        sections.append(_comparison_section([runs[i] for i in compared], [labels[i] for i in compared], page))
    several = len(inputs) > 1
    for i, bench in enumerate(x for x in inputs if isinstance(x, Bench)):
        sections.append(_bench_section(bench, f"bench{i + 1}-", page, problems))
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        sections.append(_run_section(run, label, f"run{i + 1}-" if several else "", page))

    out = Path(out_dir) if out_dir is not None else _default_out(inputs)
    title = "adprune report" + (" (partial)" if any(r.partial for r in runs) else "")
    document = _page(title, [str(Path(p)) for p in paths], problems, "".join(sections))
    report = out / REPORT_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in page.figures.items():
            atomic_write_bytes(out / name, png)
        atomic_write_bytes(report, document.encode("utf-8"))
    except OSError as exc:
        raise AdpruneError(
            f"cannot write the report to {out} ({exc.strerror}): choose another --out"
        ) from None
    for problem in problems:
        warnings.warn(problem, ReportWarning, stacklevel=2)
    return report
