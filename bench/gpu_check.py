"""The GPU check: what a lent GPU can measure for adprune in a few minutes, written to one JSON file.

Steps, each recorded with its wall seconds:

1. `tests`: the CUDA-marked tests (`pytest -m cuda`);
2. `train`: CIFAR-style VGG-19 trained for 2 epochs on a generated CIFAR-10-shaped set (no download),
   dense and ADP (decided after epoch 1, cut at once): seconds per epoch, accuracy, parameters and
   NVML energy, from each run's own ledger;
3. `realised_speedup`: the pruned network's step time against dense at `--round-to` 1, 8 and 16, in
   one process (`bench/realised_speedup.py`, training and inference, contiguous and channels-last).

`--dry-run` runs every step on the CPU at toy sizes (VGG-11 at width 1/8, 256 images, 2 timed steps),
so the test suite exercises the script. Without `--dry-run` and without a CUDA GPU it says so in one
line and exits 3, measuring nothing.

    python bench/gpu_check.py [--dry-run] [--out bench/results/gpu/gpu-check.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import machine, write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from fake_data import write_cifar10_like  # noqa: E402  (the generator the test suite uses)

NO_GPU = 3
NO_GPU_MESSAGE = "no CUDA GPU is present here: nothing measured (--dry-run runs the steps on the CPU)"
SUMMARY_KEYS = ("test_acc", "params_initial", "params", "macs", "train_flops_total", "energy_j",
                "energy_source", "energy_unavailable")  # fmt: skip
# (model, width, train images, test images, batch size, timed steps) for a real and a dry run
SIZES = {False: ("vgg19", 1.0, 10_000, 2_000, 128, 30), True: ("vgg11", 0.125, 256, 64, 32, 2)}


def _run(command: list[str]) -> dict[str, Any]:
    """Run `command` from the repository root; its exit code, seconds and last output lines."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip().splitlines()
    return {"command": " ".join(command), "returncode": result.returncode,
            "seconds": round(time.perf_counter() - started, 2), "tail": output[-5:]}  # fmt: skip


def _train(data: Path, out: Path, device: str, dry_run: bool, *extra: str) -> dict[str, Any]:
    """One 2-epoch `adprune train` run; its step record plus per-epoch seconds and its summary."""
    model, width, _, _, batch, _ = SIZES[dry_run]
    step = _run([sys.executable, "-m", "adprune", "train", "--model", model, "--width", str(width),
                 "--dataset", "cifar10", "--data-dir", str(data), "--epochs", "2", "--batch-size", str(batch),
                 "--device", device, "--no-progress", "--no-report", "--out", str(out), *extra])  # fmt: skip
    if step["returncode"] != 0:
        return step
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    step["seconds_per_epoch"] = [round(sum(e["wall_s"].values()), 3) for e in epochs]
    step["train_seconds_per_epoch"] = [e["wall_s"]["train"] for e in epochs]
    step.update({key: summary.get(key) for key in SUMMARY_KEYS})
    return step


def check(dry_run: bool, out: Path) -> int:
    """Run the steps, write `out`; 0 when every step passed, 1 when one failed."""
    device = "cpu" if dry_run else "cuda"
    model, _, train_images, test_images, batch, steps = SIZES[dry_run]
    started = time.perf_counter()
    result: dict[str, Any] = {**machine(device), "dry_run": dry_run, "model": model}
    if not dry_run:
        result["gpu"] = torch.cuda.get_device_name(0)
    marker = ["-m", "cuda", "--collect-only"] if dry_run else ["-m", "cuda"]
    result["tests"] = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marker, "tests"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_cifar10_like(root / "data", train_images, test_images)
        runs = {"dense": ("--prune", "none"), "adp": ("--prune-at", "1", "--fade", "0")}
        result["train"] = {
            name: _train(data, root / name, device, dry_run, *args) for name, args in runs.items()
        }
        speedup_json = root / "speedup.json"
        speedup = _run([sys.executable, "bench/realised_speedup.py", "--dense", str(root / "dense"),
                        "--pruned", str(root / "adp"), "--round-to", "1,8,16", "--steps", str(steps),
                        "--warmup", "1" if dry_run else "5", "--batch-size", str(batch), "--device", device,
                        "--out", str(speedup_json)])  # fmt: skip
        if speedup["returncode"] == 0:
            speedup["rows"] = json.loads(speedup_json.read_text())["rows"]
        result["realised_speedup"] = speedup
    steps_run = [result["tests"], *result["train"].values(), result["realised_speedup"]]
    result["passed"] = all(step["returncode"] == 0 for step in steps_run)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, result)
    for step in steps_run:
        verdict = "ok  " if step["returncode"] == 0 else "FAIL"
        print(f"{verdict} {step['seconds']:7.1f} s  {step['command'][:100]}")
    print(f"gpu check {'passed' if result['passed'] else 'FAILED'} in {result['wall_s']} s: {out}")
    return 0 if result["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments; refuse in one line (exit 3) when a real check finds no CUDA GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at toy sizes")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu" / "gpu-check.json"))
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu-check: {NO_GPU_MESSAGE}", file=sys.stderr)
        return NO_GPU
    return check(args.dry_run, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
