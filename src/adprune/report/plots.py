"""The report's figures, rendered to PNG bytes.

Figures use matplotlib's object API on the Agg canvas: no pyplot, no global backend switch, nothing
shown on screen. Every figure is 12 inches wide at 100 dpi (1200 px). Series differ by marker, line
style or hatch as well as by colour, and colours come from viridis/cividis, so a greyscale print
stays readable. A prune, which happens at the end of an epoch, is drawn as a dashed vertical line
half an epoch after that epoch's point.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter

from .figures import rows_by_method

WIDTH_IN = 12.0
DPI = 100
MAX_LABELLED_ROWS = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "+++")


@dataclass
class Point:
    """One labelled run or method on a trade-off plot; a missing cost leaves it off that panel."""

    label: str
    acc: float
    acc_std: float | None = None
    params: float | None = None
    train_flops: float | None = None


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
    fig.set_layout_engine("constrained", h_pad=0.1, w_pad=0.1)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _colours(n: int, cmap: str = "cividis") -> list[tuple[float, ...]]:
    """`n` colours from dark to mid-light, avoiding the palest end that vanishes on white."""
    return [tuple(c) for c in colormaps[cmap](np.linspace(0.0, 0.75, max(n, 2)))[:n]]


def _mark_prunes(ax: Axes, prunes: Sequence[int]) -> None:
    for i, epoch in enumerate(prunes):
        ax.axvline(
            epoch + 0.5, color="0.3", linestyle=(0, (5, 3)), linewidth=1.3, label="prune" if i == 0 else None
        )


def _epoch_axis(ax: Axes) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def _series(ax: Axes, x: Sequence[float], ys: Sequence[tuple[str, Sequence[float]]]) -> None:
    for i, (label, y) in enumerate(ys):
        ax.plot(
            x,
            y,
            label=label,
            color=_colours(len(ys))[i],
            marker=MARKERS[i % len(MARKERS)],
            linestyle=LINESTYLES[i % len(LINESTYLES)],
            linewidth=2,
            markersize=6,
        )


def _scale(
    ax: Axes, axis: str, values: Sequence[float], headroom: float = 0.08, allow_log: bool = True
) -> None:
    """Log scale where values span more than two decades (so at least two ticks are labelled), else
    linear from 0; engineering tick labels.

    `headroom` is the share of the axis left free beyond the largest value (and, on a log axis,
    below the smallest).
    """
    positive = [v for v in values if v > 0]
    log = allow_log and bool(positive) and max(positive) / min(positive) > 100
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log" if log else "linear")
    target.set_major_formatter(EngFormatter(sep=""))
    target.set_minor_formatter(NullFormatter())
    if log:
        ax.margins(**{axis: headroom})
    elif positive:
        (ax.set_xlim if axis == "x" else ax.set_ylim)(0, max(positive) / (1 - headroom))


def density_heatmap(
    layers: Sequence[str],
    epochs: Sequence[int],
    density: Sequence[Sequence[float]],
    prunes: Sequence[int],
    summary: Sequence[tuple[str, Sequence[float]]] = (),
) -> bytes:
    """Layers (rows, in network order) × epochs heatmap of activation density on a fixed 0..1 scale.

    `density[i][j]` is layer i at epoch `epochs[j]` (NaN where unknown, drawn grey); epochs must be
    consecutive. `summary` rows (label, one value in [0, 1] per epoch), such as the spread of the
    layer densities and the share of near-dead channels, are drawn below the layers, after a
    separating line. Cells carry their value when the grid is small enough to read; with more than
    100 rows only every k-th row is named.
    """
    layers = [*layers, *(label for label, _ in summary)]
    grid = np.array([*density, *(values for _, values in summary)], dtype=float)
    n_layers = len(layers)
    fig = _figure(min(2.2 + 0.32 * n_layers, 22))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    extent = (epochs[0] - 0.5, epochs[-1] + 0.5, n_layers - 0.5, -0.5)
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=0,
        vmax=1,
        aspect="auto",
        extent=extent,
        interpolation="none",
    )
    bar = fig.colorbar(image, ax=ax, location="top", shrink=0.5, aspect=40, pad=0.01)
    bar.set_label("activation density (share of non-zero outputs)")
    step = math.ceil(n_layers / MAX_LABELLED_ROWS)
    ax.set_yticks(range(0, n_layers, step), [layers[i] for i in range(0, n_layers, step)])
    ax.tick_params(axis="y", labelsize=9 if n_layers > 30 else 10)
    ax.set_ylabel("layer (module name)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) <= 20 and n_layers <= 40:
        for (row, col), value in np.ndenumerate(grid):
            if not math.isnan(value):
                ax.text(
                    epochs[col], row, f"{value:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if value < 0.6 else "black",
                )  # fmt: skip
    if summary:
        ax.axhline(n_layers - len(summary) - 0.5, color="white", linewidth=3.2)
    _mark_prunes(ax, prunes)
    for epoch in prunes:  # the dashed line alone is hard to see on the darker cells
        ax.axvline(epoch + 0.5, color="white", linewidth=3.2, zorder=1.9)
    fig.suptitle("Activation density per layer over epochs" + (" (white line: prune)" if prunes else ""))
    return _png(fig)


def width_bars(layers: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> bytes:
    """Horizontal grouped bars: one group per layer (network order, top to bottom), one bar per stage.

    `series` is `(label, widths in layer order)` for each stage, e.g. the initial widths and the
    widths after each prune.
    """
    n_layers, n_series = len(layers), len(series)
    group = 0.8
    bar = group / n_series
    fig = _figure(min(1.6 + n_layers * (0.16 * n_series + 0.1), 24))
    ax = fig.add_subplot()
    colours = _colours(n_series, "viridis")
    labelled = n_layers * n_series <= 80
    for i, (label, widths) in enumerate(series):
        offsets = [y - group / 2 + (i + 0.5) * bar for y in range(n_layers)]
        bars = ax.barh(
            offsets, widths, height=bar, label=label, color=colours[i], hatch=HATCHES[i % len(HATCHES)],
            edgecolor="black", linewidth=0.6,
        )  # fmt: skip
        if labelled:
            ax.bar_label(bars, padding=2, fontsize=8)
    step = math.ceil(n_layers / MAX_LABELLED_ROWS)
    ax.set_yticks(range(0, n_layers, step), [layers[i] for i in range(0, n_layers, step)])
    ax.tick_params(axis="y", labelsize=9 if n_layers > 30 else 10)
    ax.set_ylim(n_layers - 0.5, -0.5)
    ax.set_xlabel("output channels (width)")
    ax.set_ylabel("layer (module name)")
    ax.margins(x=0.3)  # room on the right for the legend
    ax.tick_params(axis="x", labeltop=n_layers > 20)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title("Width per layer " + ("before and after each prune" if n_series > 1 else "(never pruned)"))
    ax.legend(loc="best")
    return _png(fig)


def training_curves(
    epochs: Sequence[int],
    accuracy: Sequence[tuple[str, Sequence[float]]],
    loss: Sequence[tuple[str, Sequence[float]]],
    prunes: Sequence[int],
) -> bytes:
    """Accuracy in percent (left) and loss (right) per epoch, one line per named series."""
    fig = _figure(4.6)
    left, right = fig.subplots(1, 2)
    for ax, series, ylabel, title in (
        (left, accuracy, "accuracy (%)", "Accuracy"),
        (right, loss, "cross-entropy loss", "Loss"),
    ):
        _series(ax, epochs, series)
        _mark_prunes(ax, prunes)
        _epoch_axis(ax)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    return _png(fig)


def cost_curves(
    epochs: Sequence[int],
    params: Sequence[int],
    macs: Sequence[int],
    flops_total: Sequence[int],
    prunes: Sequence[int],
    unpruned_flops: Sequence[int] | None = None,
) -> bytes:
    """Parameters, inference MACs per sample and cumulative training FLOPs per epoch, side by side.

    Parameters and MACs are those of the network as it trained during each epoch, drawn as steps
    that drop at the prune line. `unpruned_flops`, if given, is drawn as a dotted reference: the
    cumulative FLOPs had the network never been pruned. The parameter and MAC axes turn logarithmic
    when their values span more than two decades; linear axes start at zero.
    """
    fig = _figure(4.4)
    left, middle, right = fig.subplots(1, 3)
    colour = _colours(1)[0]
    style = {"color": colour, "linewidth": 2, "markersize": 6}
    left.plot(epochs, params, marker=MARKERS[0], drawstyle="steps-mid", **style)
    middle.plot(epochs, macs, marker=MARKERS[1], drawstyle="steps-mid", **style)
    right.plot(epochs, flops_total, marker=MARKERS[2], label="this run", **style)
    if unpruned_flops:
        right.plot(
            epochs, unpruned_flops, color="0.45", linestyle=":", linewidth=2, label="never pruned (est.)"
        )
    panels = (
        (left, params, "parameters", "Parameters", True),
        (middle, macs, "MACs per sample", "Inference MACs", True),
        (
            right,
            [*flops_total, *(unpruned_flops or [])],
            "FLOPs (cumulative)",
            "Training FLOPs so far",
            False,
        ),
    )
    for ax, values, ylabel, title, allow_log in panels:
        _mark_prunes(ax, prunes)
        _epoch_axis(ax)
        _scale(ax, "y", values, allow_log=allow_log)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if prunes:
            ax.legend(loc="best")
    return _png(fig)


def tradeoff(points: Sequence[Point], title: str) -> bytes | None:
    """Accuracy against parameters and against training FLOPs, one labelled point per run or method.

    Each point has its own marker and colour, named in a legend below the panels. A panel is drawn
    only when some point has its cost; None when no point has either.
    """
    panels = [
        (attr, xlabel)
        for attr, xlabel in (("params", "parameters (final)"), ("train_flops", "training FLOPs (total)"))
        if any(getattr(p, attr) is not None for p in points)
    ]
    if not panels:
        return None
    fig = _figure(5.6)
    fig.suptitle(title)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    colours = _colours(len(points))
    styles = [
        {
            "marker": MARKERS[i % len(MARKERS)],
            "color": colours[i],
            "markeredgecolor": "black",
            "markersize": 10,
        }
        for i in range(len(points))
    ]
    for ax, (attr, xlabel) in zip(axes, panels, strict=True):
        shown = [(i, p) for i, p in enumerate(points) if getattr(p, attr) is not None]
        for i, p in shown:
            x, y = getattr(p, attr), 100 * p.acc
            std = None if p.acc_std is None else 100 * p.acc_std
            ax.errorbar(x, y, yerr=std, capsize=4, linestyle="none", **styles[i])
            ax.annotate(p.label, (x, y), xytext=(9, 0), textcoords="offset points", fontsize=10, va="center")
        _scale(ax, "x", [getattr(p, attr) for _, p in shown], headroom=0.25)
        ax.margins(y=0.15)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.grid(True, which="minor", axis="x", alpha=0.1)
        ax.set_title(f"Accuracy vs {xlabel.split(' (')[0]}")
    handles = [
        Line2D([], [], linestyle="none", label=p.label, **style)
        for p, style in zip(points, styles, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(points), 4))
    return _png(fig)


@dataclass
class Line:
    """One method across a frontier: its points' costs and accuracies (mean and seed spread)."""

    label: str
    params: Sequence[float]
    macs: Sequence[float]
    train_flops: Sequence[float]
    acc: Sequence[float]
    acc_std: Sequence[float | None]


FRONTIER_PANELS = (
    ("params", "parameters (final)"),
    ("macs", "inference MACs per sample"),
    ("train_flops", "training FLOPs (total)"),
)


def frontier(lines: Sequence[Line], title: str, reference: str = "dense") -> bytes | None:
    """Accuracy against parameters, inference MACs and training FLOPs: one line per method through its
    points (ordered by cost), each with error bars of its seed spread; log cost axes. The accuracy
    of the line labelled `reference` (its first point) is also drawn across each panel, dotted.
    None without any point."""
    if not any(line.acc for line in lines):
        return None
    fig = _figure(5.2)
    fig.suptitle(title)
    axes = fig.subplots(1, len(FRONTIER_PANELS))
    colours = _colours(len(lines), "viridis")
    for ax, (attr, xlabel) in zip(axes, FRONTIER_PANELS, strict=True):
        for i, line in enumerate(lines):
            order = sorted(range(len(line.acc)), key=lambda k: getattr(line, attr)[k])
            x = [getattr(line, attr)[k] for k in order]
            y = [100 * line.acc[k] for k in order]
            err = [100 * (line.acc_std[k] or 0.0) for k in order]
            ax.errorbar(
                x, y, yerr=err, capsize=3, label=line.label, color=colours[i],
                marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                linewidth=1.8, markersize=7, markeredgecolor="black",
            )  # fmt: skip
            if line.label == reference and line.acc:
                ax.axhline(100 * line.acc[0], color=colours[i], linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(lines), 6))
    return _png(fig)


FRONTIER_KEYS = ("test_acc", "params", "macs", "train_flops_total")


def frontier_lines(rows: Sequence[dict]) -> list[Line]:
    """One `Line` per method of a bench's rows (their `family`, else `method`), in table order;
    rows without a test accuracy or a cost are left out."""
    costed = [r for r in rows if all(isinstance(r.get(k), (int, float)) for k in FRONTIER_KEYS)]
    return [
        Line(
            family,
            [r["params"] for r in members],
            [r["macs"] for r in members],
            [r["train_flops_total"] for r in members],
            [r["test_acc"] for r in members],
            [r.get("test_acc_std") for r in members],
        )
        for family, members in rows_by_method(costed).items()
    ]
