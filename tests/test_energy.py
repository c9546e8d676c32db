"""The energy meter reads the machine's own counters (NVML on GPUs, RAPL on Linux CPUs), never
estimates, and says why when it has none."""

import sys
import types
from pathlib import Path

import pytest
import torch

from adprune.train.energy import EnergyMeter


def _fake_nvml(readings_mj: list[int], fail: Exception | None = None) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    calls = iter(readings_mj)
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetHandleByIndex = lambda index: ("gpu", index)

    def energy(handle):
        if fail is not None:
            raise fail
        assert handle == ("gpu", 1)
        return next(calls)

    module.nvmlDeviceGetTotalEnergyConsumption = energy
    return module


def test_nvml_counter_in_millijoules_gives_joules_since_start(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([5_000, 7_000, 9_500, 12_250]))
    meter = EnergyMeter(torch.device("cuda", 1))
    assert meter.source == "nvml" and meter.unavailable is None
    meter.start()  # the probe read 5,000 mJ, the start 7,000 mJ
    assert meter.joules() == 2.5 and meter.joules() == 5.25


def test_without_nvidia_ml_py_energy_is_none_and_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    meter = EnergyMeter("cuda:0")
    meter.start()
    assert meter.joules() is None and meter.source is None
    assert meter.unavailable == "nvidia-ml-py is not installed: pip install 'adprune[gpu]'"


def test_a_gpu_without_an_energy_counter_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([], fail=RuntimeError("Not Supported")))
    meter = EnergyMeter("cuda:1")
    assert (
        meter.joules() is None
        and "NVML cannot read" in meter.unavailable
        and "Not Supported" in meter.unavailable
    )


def _zone(root: Path, name: str, energy_uj: int, range_uj: int) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return zone


def test_rapl_sums_packages_and_survives_a_wrap_around(tmp_path):
    a = _zone(tmp_path, "intel-rapl:0", 1_000_000, 10_000_000)
    b = _zone(tmp_path, "intel-rapl:1", 2_000_000, 10_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 999, 10_000_000)  # a sub-zone (core): already inside package 0
    meter = EnergyMeter("cpu", rapl_root=tmp_path)
    assert meter.source == "rapl"
    meter.start()
    (a / "energy_uj").write_text("4000000\n")
    assert meter.joules() == pytest.approx(3.0)
    (a / "energy_uj").write_text("500000\n")  # package 0 wrapped past its 10 J range: 6.5 J more
    (b / "energy_uj").write_text("2500000\n")  # package 1 did not: 0.5 J more
    assert meter.joules() == pytest.approx(3.0 + 6.5 + 0.5)


def test_no_rapl_counter_is_reported(tmp_path):
    meter = EnergyMeter("cpu", rapl_root=tmp_path)
    meter.start()
    assert meter.joules() is None and "no readable RAPL energy counter" in meter.unavailable
