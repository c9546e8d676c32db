"""Energy measured by the machine's own counters (NVML on NVIDIA GPUs, RAPL on Linux CPUs), or None.

Nothing is ever estimated here: without a readable counter the meter reads None and says why.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import torch

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter:
    """Joules used since `start()`, from the machine's own counters, or None where there is none.

    On CUDA devices NVML's total-energy counter is read (package `nvidia-ml-py`: `pip install
    'adprune[gpu]'`); on Linux CPUs the RAPL powercap package counters
    (`RAPL_ROOT/intel-rapl:*/energy_uj`), summed over packages and corrected for wrap-around.
    Nothing is ever estimated here: without a counter `joules()` is None and `unavailable` says why.
    """

    def __init__(self, device: torch.device | str = "cpu", rapl_root: Path = RAPL_ROOT) -> None:
        self.device = torch.device(device)
        self.unavailable: str | None = None
        self._ranges: list[float] = []  # each counter's wrap-around range in joules (inf: never wraps)
        self._read = self._nvml_reader() if self.device.type == "cuda" else self._rapl_reader(Path(rapl_root))
        self._start: list[float] | None = None
        self._last: list[float] = []
        self._wrapped: list[float] = []

    @property
    def source(self) -> str | None:
        """'nvml', 'rapl' or None."""
        return None if self._read is None else ("nvml" if self.device.type == "cuda" else "rapl")

    def _nvml_reader(self):
        try:
            import pynvml
        except ImportError:
            self.unavailable = "nvidia-ml-py is not installed: pip install 'adprune[gpu]'"
            return None
        try:
            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as exc:  # NVML raises its own error types, by driver and GPU generation
            self.unavailable = f"NVML cannot read this GPU's energy counter ({type(exc).__name__}: {exc})"
            return None
        self._ranges = [math.inf]  # a 64-bit millijoule counter
        return lambda: [pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0]

    def _rapl_reader(self, root: Path):
        zones = [Path(p) for p in glob.glob(str(root / "intel-rapl:[0-9]*")) if Path(p).name.count(":") == 1]
        readable = [z for z in zones if os.access(z / "energy_uj", os.R_OK)]
        if not readable:
            self.unavailable = (
                f"no readable RAPL energy counter under {root} (Linux on Intel or AMD CPUs; reading it "
                "may need root or a virtual machine that exposes it)"
            )
            return None
        try:
            ranges = [int((z / "max_energy_range_uj").read_text()) for z in readable]
            for z in readable:
                int((z / "energy_uj").read_text())
        except (OSError, ValueError) as exc:
            self.unavailable = f"the RAPL energy counters under {root} cannot be read ({exc})"
            return None
        self._ranges = [r / 1e6 for r in ranges]
        return lambda: [int((z / "energy_uj").read_text()) / 1e6 for z in readable]

    def disable(self, why: str) -> None:
        """Measure nothing from now on (`joules()` is None) and say `why` in `unavailable`."""
        self._read, self._start, self.unavailable = None, None, why

    def start(self) -> None:
        """Start (or restart) the measurement."""
        if self._read is not None:
            self._start = self._last = self._read()
            self._wrapped = [0.0] * len(self._start)

    def joules(self) -> float | None:
        """Energy since `start()` in joules, or None without a counter. Each counter that reads less
        than last time wrapped around (RAPL's do, every few minutes under load) and gains its range."""
        if self._read is None or self._start is None:
            return None
        now = self._read()
        for i, (value, last) in enumerate(zip(now, self._last, strict=True)):
            if value < last:
                self._wrapped[i] += self._ranges[i]
        self._last = now
        return sum(now) + sum(self._wrapped) - sum(self._start)
