"""Seconds of one prune step (plan, surgery, optimizer-state remap) on this CPU, per model.

Each repeat builds a fresh model at CIFAR shapes whose SGD optimizer already holds momentum buffers
(one training step on a random batch), attaches an ADPruner, gives every channel group seeded
per-channel densities with a mean of 0.5, and times `ADPruner.prune` alone. The ADPruner constructor
(a trace, and with the default check=True a trial prune of a deep copy) is timed apart, both with and
without the check. Repeats alternate between the models, so machine noise hits them alike.

    OMP_NUM_THREADS=1 python bench/prune_latency.py --models vgg19,resnet18 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _common import machine, write_result
from torch import nn

from adprune.models import build_model
from adprune.prune.cost import count_parameters
from adprune.prune.pruner import ADPruner

RESULTS = Path(__file__).parent / "results"
TARGET_S = 1.0
CHANNELS, IMAGE_SIZE, CLASSES = 3, 32, 10


def _densities(widths: dict[str, int], seed: int) -> dict[str, torch.Tensor]:
    """Per-channel densities for every group: evenly spaced over [0, 1] (mean 0.5), in seeded order."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.linspace(0, 1, width, dtype=torch.float64)[torch.randperm(width, generator=generator)]
        for name, width in widths.items()
    }


def _model_with_momentum(model_name: str, width: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh model and an SGD optimizer whose momentum buffers exist (one step on a random batch)."""
    model = build_model(
        model_name, in_channels=CHANNELS, num_classes=CLASSES, image_size=IMAGE_SIZE, width=width
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    images = torch.randn(8, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.randint(0, CLASSES, (8,))
    nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    return model, optimizer


def measure_once(model_name: str, width: float, seed: int) -> dict[str, float | int]:
    """One repeat: constructor seconds without and with the check, prune seconds, params before/after."""
    model, optimizer = _model_with_momentum(model_name, width)
    example = torch.zeros(2, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    started = time.perf_counter()
    unchecked = ADPruner(model, example, optimizer, check=False)
    construct_s = time.perf_counter() - started
    unchecked.monitor.detach()
    started = time.perf_counter()
    pruner = ADPruner(model, example, optimizer)
    construct_check_s = time.perf_counter() - started
    densities = _densities(pruner.widths, seed)
    params_before = count_parameters(model)
    started = time.perf_counter()
    event = pruner.prune(1, channel_densities=densities)
    prune_s = time.perf_counter() - started
    assert event is not None and event.params_after < event.params_before
    return {
        "prune_s": prune_s,
        "construct_s": construct_s,
        "construct_check_s": construct_check_s,
        "groups": len(pruner.widths),
        "skipped": len(pruner.skipped),
        "params_before": params_before,
        "params_after": count_parameters(model),
    }


def summarise(model_name: str, width: float, runs: list[dict[str, float | int]]) -> dict[str, Any]:
    """The result row of one model over its repeats."""
    seconds = [r["prune_s"] for r in runs]
    median = statistics.median(seconds)
    return {
        "model": model_name,
        "width": width,
        "input_shape": [CHANNELS, IMAGE_SIZE, IMAGE_SIZE],
        "num_classes": CLASSES,
        "repeats": len(runs),
        "prune_s": seconds,
        "median_prune_s": median,
        "min_prune_s": min(seconds),
        "max_prune_s": max(seconds),
        "median_construct_s": statistics.median(r["construct_s"] for r in runs),
        "median_construct_check_s": statistics.median(r["construct_check_s"] for r in runs),
        "groups": runs[0]["groups"],
        "skipped": runs[0]["skipped"],
        "params_before": runs[0]["params_before"],
        "params_after": runs[0]["params_after"],
        "target_s": TARGET_S,
        "pass": median < TARGET_S,
    }


def main(argv: list[str] | None = None) -> None:
    """Time the prune step of each model given and write bench/results/prune_latency.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg19,resnet18", help="comma list of model names")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "prune_latency.json"))
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    names = args.models.split(",")
    runs: dict[str, list[dict[str, float | int]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            runs[name].append(measure_once(name, args.width, args.seed + repeat))
    rows = [summarise(name, args.width, runs[name]) for name in names]
    columns = (
        "median_prune_s",
        "min_prune_s",
        "max_prune_s",
        "median_construct_s",
        "median_construct_check_s",
    )
    print(f"{'seconds':10s} {'median':>8s} {'min':>8s} {'max':>8s} {'init':>8s} {'init+chk':>8s}  "
          f"{'params before':>13s} {'params after':>12s}  < {TARGET_S:g} s")  # fmt: skip
    for row in rows:
        print(
            f"{row['model']:10s} {' '.join(f'{row[c]:8.3f}' for c in columns)}  {row['params_before']:13,d} "
            f"{row['params_after']:12,d}  {'pass' if row['pass'] else 'FAIL'}",
            flush=True,
        )
    write_result(args.out, {**machine("cpu"), "rows": rows})


if __name__ == "__main__":
    main()
