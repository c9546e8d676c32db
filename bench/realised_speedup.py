"""How much of a pruned network's MAC reduction becomes real step time, against its dense run.

Both trained models are loaded from their run directories and timed side by side in one process on
random inputs of their input shape: training steps (forward, cross-entropy backward, SGD momentum
step) and, as a second row, inference forwards (eval mode, no grad). Steps alternate ABBA between
the dense and the pruned model, so machine noise hits both alike. The speed-up is the ratio of the
two median step times; dividing it by the MAC ratio (dense / pruned inference MACs of one sample)
gives the share of the theoretical saving that is realised.

    python bench/realised_speedup.py --dense runs/dense --pruned runs/adp-inherit
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import machine, write_result
from torch import nn

import adprune
from adprune.errors import AdpruneError
from adprune.prune.cost import count_parameters, inference_macs
from adprune.runs.model_files import read_arch

RESULTS = Path(__file__).parent / "results"
SAME_KEYS = ("in_channels", "image_size", "num_classes")  # both models must agree on these


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stepper(model: nn.Module, train: bool, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One training step (forward, backward, SGD momentum step) or one inference forward of `model`."""
    if not train:

        def forward() -> None:
            with torch.no_grad():
                model(images)

        return forward
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def measure(
    dense: nn.Module,
    pruned: nn.Module,
    train: bool,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    warmup: int,
) -> tuple[float, float]:
    """Median seconds of a step of the dense and of the pruned model, over `steps` ABBA-interleaved each."""
    device = images.device
    arms = []
    for model in (dense, pruned):
        model.train(train)
        arms.append(_stepper(model, train, images, labels))

    def timed(step: Callable[[], None]) -> float:
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        return time.perf_counter() - started

    for _ in range(warmup):
        for step in arms:
            step()
    seconds: tuple[list[float], list[float]] = ([], [])
    for i in range(2 * steps):
        arm = 0 if (i % 2 == 0) == ((i // 2) % 2 == 0) else 1  # ABBA order cancels slow drifts
        seconds[arm].append(timed(arms[arm]))
    return statistics.median(seconds[0]), statistics.median(seconds[1])


def _load(run_dir: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of `run_dir` on `device` and its architecture; AdpruneError when unloadable."""
    arch = read_arch(run_dir)
    return adprune.load(run_dir, device), arch


def main(argv: list[str] | None = None) -> None:
    """Time both runs' models and write bench/results/realised_speedup.json; exit 2 on a bad run dir."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True, help="run directory of the dense (unpruned) model")
    parser.add_argument("--pruned", required=True, help="run directory of the pruned model")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per model and mode")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per model and mode first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(RESULTS / "realised_speedup.json"))
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        (dense, arch), (pruned, pruned_arch) = _load(args.dense, device), _load(args.pruned, device)
        if any(arch[key] != pruned_arch[key] for key in SAME_KEYS):
            raise AdpruneError(
                f"{args.dense} and {args.pruned} differ in {', '.join(SAME_KEYS)}: nothing to compare"
            )
    except AdpruneError as exc:
        print(f"realised_speedup: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    shape = [arch["in_channels"], arch["image_size"], arch["image_size"]]
    example = torch.zeros(1, *shape, device=device)
    dense_macs, pruned_macs = inference_macs(dense, example), inference_macs(pruned, example)
    mac_ratio = dense_macs / pruned_macs
    images = torch.randn(args.batch_size, *shape, device=device)
    labels = torch.randint(0, arch["num_classes"], (args.batch_size,), device=device)
    rows = []
    for mode in ("train", "eval"):
        dense_s, pruned_s = measure(dense, pruned, mode == "train", images, labels, args.steps, args.warmup)
        speedup = dense_s / pruned_s
        share = speedup / mac_ratio
        row = {
            "mode": mode,
            "median_step_s_dense": dense_s,
            "median_step_s_pruned": pruned_s,
            "speedup": speedup,
            "mac_ratio": mac_ratio,
            "realised_share": share,
        }
        rows.append(row)
        print(
            f"{mode:5s} dense {1000 * dense_s:8.2f} ms  pruned {1000 * pruned_s:8.2f} ms  "
            f"speed-up {speedup:5.2f}x  MAC ratio {mac_ratio:5.2f}x  realised {100 * share:5.1f}%",
            flush=True,
        )
    result = {
        **machine(device),
        "dense": args.dense,
        "pruned": args.pruned,
        "model": arch["model"],
        "input_shape": shape,
        "batch_size": args.batch_size,
        "steps_each": args.steps,
        "warmup": args.warmup,
        "dense_macs": dense_macs,
        "pruned_macs": pruned_macs,
        "dense_params": count_parameters(dense),
        "pruned_params": count_parameters(pruned),
        "rows": rows,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
