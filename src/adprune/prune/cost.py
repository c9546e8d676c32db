"""What a network costs: parameters, inference MACs, training FLOPs, energy.

Operation counts come from `torch.utils.flop_counter.FlopCounterMode`, which counts at the aten
level, so functional ops and any module type count. It counts matrix products and convolutions
(a multiply-add is 2 FLOPs); elementwise ops, normalisation and pooling are not counted, which
is the usual convention and under 1% of the work of a conv network.
"""

from __future__ import annotations

import glob
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


class EnergyMeter:
    """Joules used since `start()`, from the machine's own counters, or None where there is none.

    On CUDA devices NVML's total-energy counter is read (package `nvidia-ml-py`); on Linux CPUs the
    RAPL powercap package counters (`/sys/class/powercap/intel-rapl:*/energy_uj`), summed over
    packages and corrected for wrap-around. Nothing is ever estimated here.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._read = self._nvml_reader() if self.device.type == "cuda" else self._rapl_reader()
        self._start: float | None = None
        self._last: float | None = None
        self._wrapped = 0.0

    @property
    def source(self) -> str | None:
        """'nvml', 'rapl' or None."""
        return None if self._read is None else ("nvml" if self.device.type == "cuda" else "rapl")

    def _nvml_reader(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception:
            return None
        return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0

    def _rapl_reader(self):
        zones = [Path(p) for p in glob.glob("/sys/class/powercap/intel-rapl:[0-9]*") if p.count(":") == 1]
        readable = [z for z in zones if os.access(z / "energy_uj", os.R_OK)]
        if not readable:
            return None
        try:
            ranges = [int((z / "max_energy_range_uj").read_text()) for z in readable]
            for z in readable:
                int((z / "energy_uj").read_text())
        except (OSError, ValueError):
            return None
        self._rapl_range_j = sum(ranges) / 1e6
        return lambda: sum(int((z / "energy_uj").read_text()) for z in readable) / 1e6

    def start(self) -> None:
        """Start (or restart) the measurement."""
        if self._read is not None:
            self._start = self._last = self._read()
            self._wrapped = 0.0

    def joules(self) -> float | None:
        """Energy since `start()` in joules, or None without a counter."""
        if self._read is None or self._start is None:
            return None
        now = self._read()
        if now < self._last:  # RAPL counters wrap around
            self._wrapped += self._rapl_range_j
        self._last = now
        return now + self._wrapped - self._start
