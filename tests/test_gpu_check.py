"""scripts/gpu-check.sh: its dry run on the CPU goes through every step and writes one complete JSON
file; without a GPU the real check says so in one line and measures nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu-check.sh"


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_the_dry_run_goes_through_every_step_and_writes_its_figures(tmp_path):
    out = tmp_path / "gpu" / "check.json"
    result = _gpu_check("--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["passed"] is True and report["device"] == "cpu"
    assert report["tests"]["returncode"] == 0 and "-m cuda" in report["tests"]["command"]
    dense, adp = report["train"]["dense"], report["train"]["adp"]
    for run in (dense, adp):
        assert len(run["seconds_per_epoch"]) == 2 and all(s > 0 for s in run["seconds_per_epoch"])
        assert run["energy_j"] is not None or run["energy_unavailable"]
    assert dense["params"] == dense["params_initial"] == adp["params_initial"] > adp["params"]
    arms = {(row["arm"], row["layout"], row["mode"]) for row in report["realised_speedup"]["rows"]}
    for arm in ("dense", "pruned", "round-1", "round-8", "round-16"):
        for layout in ("contiguous", "channels-last"):
            assert {(arm, layout, "train"), (arm, layout, "eval")} <= arms
    assert f"gpu check passed in {report['wall_s']} s: {out}" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the real check would run")
def test_without_a_gpu_the_check_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "check.json"
    result = _gpu_check("--out", str(out))
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU is present here: nothing measured (--dry-run runs the steps on the CPU)"
    ]
    assert not out.exists()
