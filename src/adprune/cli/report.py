"""`adprune report`: an HTML page of plots and tables for runs and bench results."""

from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import AdpruneError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` subcommand to `subparsers`; its handler is `args.run(args)`."""
    p = subparsers.add_parser(
        "report",
        help="write an HTML report with plots of runs and bench results",
        description=(
            "Write report.html (self-contained: figures embedded, nothing loaded from the network) "
            "and each figure as a PNG. Per run: accuracy and loss, activation density per layer, "
            "widths before and after each prune, final architecture, parameters, MACs and training "
            "FLOPs. Two or more runs are also compared, the first being the reference. A run still "
            "in progress is reported as partial."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RUN_DIR_OR_BENCH_JSON",
        help="run directories written by 'adprune train', and/or bench result .json files",
    )
    p.add_argument(
        "--out",
        default=None,
        help="directory for report.html and the PNGs (default: RUN_DIR/report for a single run "
        "directory, ./report otherwise)",
    )
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the report, print its warnings to stderr and its path to stdout; return 0."""
    try:
        from ..report.html import ReportWarning, write_report
    except ModuleNotFoundError as exc:
        raise AdpruneError(
            f"reports need matplotlib, which is not installed ({exc}): pip install matplotlib"
        ) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_report(args.inputs, args.out)
    for w in caught:
        if issubclass(w.category, ReportWarning):
            print(f"adprune: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(f"report: {path}")
    return 0
