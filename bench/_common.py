"""What every bench script records about the machine, and how it writes its result file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from adprune.bench.table import cpu_name


def machine(device: torch.device | str) -> dict[str, Any]:
    """The device, CPU, torch thread count and torch version a measurement ran with."""
    return {
        "device": str(device),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Write `result` as indented JSON to `path`."""
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
