"""Seconds until the command line answers: help, a subcommand's help, an argument error, against
`python -c "import torch"`, each run as a fresh process, interleaved, medians of `--repeats`.

    python bench/cli_startup.py --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, write_result

RESULTS = Path(__file__).parent / "results"
TARGET_S = 1.0
COMMANDS = {
    "adprune --help": [sys.executable, "-m", "adprune", "--help"],
    "adprune train --help": [sys.executable, "-m", "adprune", "train", "--help"],
    "adprune train --epochs 0 (error)": [
        sys.executable,
        "-m",
        "adprune",
        "train",
        "--epochs",
        "0",
        "--out",
        "x",
    ],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def seconds(command: list[str]) -> float:
    """Wall seconds of one run of `command` (its output discarded)."""
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(RESULTS / "cli_startup.json"))
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # warm the file cache once
        seconds(command)
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "repeats": args.repeats, "median_s": medians, "target_s": TARGET_S,
        "meets_target": all(s < TARGET_S for n, s in medians.items() if n.startswith("adprune")),
        "seconds": times, "machine": machine("cpu"),
    }  # fmt: skip
    write_result(args.out, result)
    for name, median in medians.items():
        print(f"{name:40s} {median:.3f} s")


if __name__ == "__main__":
    main()
