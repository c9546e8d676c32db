"""What a network costs: parameters, inference MACs, training FLOPs, energy.

Operation counts come from `torch.utils.flop_counter.FlopCounterMode`, which counts at the aten
level, so functional ops and any module type count. It counts matrix products and convolutions
(a multiply-add is 2 FLOPs); elementwise ops, normalisation and pooling are not counted, which
is the usual convention and under 1% of the work of a conv network.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .modes import eval_mode
from .outputs import scalar_of


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def _counted_flops(model: nn.Module, fn) -> int:
    """FLOPs of `fn()`, run with `model` in eval mode so no BatchNorm statistic and no density count moves."""
    counter = FlopCounterMode(display=False)
    with eval_mode(model), counter:
        fn()
    return int(counter.get_total_flops())


def inference_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ONE sample shaped like `example_input[0]`."""
    sample = example_input[:1]

    def forward() -> None:
        with torch.no_grad():
            model(sample)

    return _counted_flops(model, forward) // 2


def training_flops_per_sample(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one training step per sample: forward, input gradients and weight gradients.

    Measured on a real forward and backward over `example_input`; the gradients are returned by
    `torch.autograd.grad` and dropped, so the parameters' `.grad` fields are untouched.
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        with torch.enable_grad():
            output = model(example_input)
            torch.autograd.grad(scalar_of(output), params, allow_unused=True)

    return _counted_flops(model, step) // example_input.shape[0]


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
