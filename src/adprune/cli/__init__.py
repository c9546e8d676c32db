"""The `adprune` command line: one module per subcommand (train, compare, report, export, bench).

Each module adds its parser and imports the heavy modules it runs only inside its handler.

May import: anything of adprune. Nothing imports it but `adprune.__main__` and the `adprune` script.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import AdpruneError
from . import bench, compare, export, report, train


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise AdpruneError(f"{message} (see '{self.prog} --help')")


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _one_line(text: str) -> str:
    """`text` with every character that would break the line (a path may hold one) shown escaped."""
    return "".join(repr(ch)[1:-1] if ch in _LINE_BREAKS else ch for ch in text)


def build_parser() -> argparse.ArgumentParser:
    """The full `adprune` argument parser."""
    parser = _OneLineParser(prog="adprune", description="Activation-density pruning in training.")
    parser.add_argument("--version", action="version", version=f"adprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for command in (train, compare, report, export, bench):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors print one line to stderr and return 2."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except AdpruneError as exc:
        print(f"adprune: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
