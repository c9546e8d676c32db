"""`adprune compare`: finished runs side by side."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` subcommand to `subparsers`; its handler is `args.run(args)`."""
    p = subparsers.add_parser(
        "compare",
        help="print finished runs side by side",
        description=(
            "Print a table of finished runs: accuracy, parameters, MACs, training FLOPs, wall time, energy, "
            "each cost as a reduction factor against the first run."
        ),
    )
    p.add_argument("runs", nargs="+", help="run directories; the first is the reference")
    p.add_argument("--title", default="", help="a line printed above the table")
    p.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Print the comparison table; return 0."""
    from ..report.compare import comparison_rows, format_table, load_summaries

    print(format_table(comparison_rows(load_summaries(args.runs)), args.title))
    return 0
