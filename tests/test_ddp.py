"""torchrun with two CPU processes (gloo): ranks agree, and the widths equal a single-process run's."""

import json
import os
import subprocess
import sys
from pathlib import Path

TRAIN = [
    "-m", "adprune", "train", "--model", "vgg11", "--width", "0.125", "--subset", "256",
    "--epochs", "3", "--prune-at", "1", "--batch-size", "64", "--lr", "0.02", "--device", "cpu",
    "--no-progress", "--no-report",
]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}


def _widths(run_dir: Path) -> list[dict]:
    return [json.loads(line)["widths_after"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_agree_and_match_a_single_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    ddp = subprocess.run(
        [*torchrun, *TRAIN, "--out", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "all 2 ranks end with identical widths and weights" in ddp.stdout
    assert ddp.stdout.count("epoch 1/3") == 1  # only rank 0 prints
    command = [sys.executable, *TRAIN, "--out", str(tmp_path / "single")]
    single = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert single.returncode == 0, single.stderr
    assert _widths(tmp_path / "ddp") == _widths(tmp_path / "single")
    ddp_summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single_summary = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp_summary["world_size"] == 2
    assert ddp_summary["train_flops_total"] == single_summary["train_flops_total"]
    assert ddp_summary["params"] == single_summary["params"]
