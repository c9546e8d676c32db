"""The command line answers help requests and argument errors without importing torch."""

import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).parents[1] / "src")
PROBE = """
import sys
from adprune.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "torch_pruning", "numpy"})
print("HEAVY", heavy, code)
"""


def _probe(code: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "0", "--out", "x"],
        ["train", "--prune-at", "4", "--epochs", "3", "--out", "x"],
        ["train", "--optimizer", "lbfgs", "--out", "x"],
        ["train", "--max-drop", "1", "--max-prunes", "2", "--out", "x"],  # a hand-set count needs --val-split
        ["bench", "fashion-cpu", "--seeds", "0"],
        ["nonsense"],
    ],
)
def test_argument_errors_import_nothing_heavy(args):
    result = _probe(PROBE, args)
    assert "HEAVY [] 2" in result.stdout, result.stdout + result.stderr
    assert result.stderr.startswith("adprune: error: ") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["bench", "--help"], ["export", "--help"]])
def test_help_imports_nothing_heavy(args):
    code = PROBE.replace(
        "code = main(sys.argv[1:])",
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code",
    )
    result = _probe(code, args)
    assert "HEAVY [] 0" in result.stdout and "usage: adprune" in result.stdout
