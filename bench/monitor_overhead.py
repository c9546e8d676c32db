"""Training-step time with and without the density monitor, measured side by side in one process.

Three arms: no monitor, the monitor counting every step, and the monitor counting every k-th step
(`--every`). Each trial runs k consecutive steps under one arm (a fresh monitor per trial, so the
sampled arm counts the first step of each trial: its amortised cost); the arms rotate from trial to
trial, so machine noise hits them alike. The result is each arm's median step time over its trials
and the overheads against no monitor. With `--error-batches N` it also measures, on N real training
batches with both monitors attached, how far the sampled densities are from the full count.

    python bench/monitor_overhead.py --models vgg19:random,resnet18:random --batch-size 32 --every 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import machine, write_result
from torch import nn

from adprune.models import build_model
from adprune.prune.density import DensityMonitor
from adprune.prune.groups import find_groups
from adprune.prune.tp_compat import build_graph
from adprune.prune.widths import plan_widths
from adprune.train.data import BatchLoader, load_dataset

RESULTS = Path(__file__).parent / "results"


def _batches(dataset: str, batch_size: int, device: torch.device, channels: int, size: int):
    """Endless real training batches when the dataset is present, else random CIFAR-shaped ones."""
    if dataset == "random":
        while True:
            yield (
                torch.randn(batch_size, channels, size, size, device=device),
                torch.randint(0, 10, (batch_size,), device=device),
            )
    splits = load_dataset(dataset)
    loader = BatchLoader(
        splits.train_images,
        splits.train_labels,
        batch_size=batch_size,
        mean=splits.mean,
        std=splits.std,
        device=device,
        train=True,
        augment=splits.augment,
        drop_last=True,
    )
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(model_name: str, dataset: str, width: float, device: torch.device):
    channels, size = (1, 32) if dataset in ("fashion-mnist", "mnist") else (3, 32)
    model = build_model(model_name, in_channels=channels, num_classes=10, width=width).to(device)
    groups = find_groups(build_graph(model, torch.zeros(1, channels, size, size, device=device)))
    return model, groups, channels, size


def measure(model_name, dataset, steps, batch_size, width, every, device) -> dict[str, float]:
    """Median seconds per step of each arm (plain, full, sampled) over `steps` trials of `every` steps."""
    model, groups, channels, size = _model(model_name, dataset, width, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    batches = _batches(dataset, batch_size, device, channels, size)
    model.train()

    def trial(arm: str) -> float:
        monitor = (
            None if arm == "plain" else DensityMonitor(model, groups, every=every if arm == "sampled" else 1)
        )
        _sync(device)
        started = time.perf_counter()
        for _ in range(every):
            images, labels = next(batches)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), labels).backward()
            optimizer.step()
        _sync(device)
        seconds = (time.perf_counter() - started) / every
        if monitor is not None:
            assert monitor.read()
            monitor.detach()
        return seconds

    arms = ("plain", "full", "sampled")
    for arm in arms:
        trial(arm)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for i in range(steps):
        for arm in arms[i % 3 :] + arms[: i % 3]:  # rotate the order
            times[arm].append(trial(arm))
    return {arm: statistics.median(values) for arm, values in times.items()}


def sampling_error(model_name, dataset, batches_n, batch_size, width, every, device) -> dict[str, float]:
    """How far densities counted on every `every`-th of `batches_n` training batches are from the full
    count: largest error of a group density and of a channel density, the planned widths that
    differ, and the largest standard deviation of a group density across batches."""
    model, groups, channels, size = _model(model_name, dataset, width, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = _batches(dataset, batch_size, device, channels, size)
    model.train()
    for _ in range(batches_n):  # train a while first: densities settle as the network learns
        images, labels = next(batches)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    full, sampled = DensityMonitor(model, groups), DensityMonitor(model, groups, every=every)
    single = DensityMonitor(model, groups)
    history = []
    for _ in range(batches_n):
        images, labels = next(batches)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        history.append({name: float(d.mean()) for name, d in single.read().items()})
        single.reset()
    exact, estimate = full.read(), sampled.read()
    widths = {g.name: g.width for g in groups}
    group_exact = {n: float(d.mean()) for n, d in exact.items()}
    group_estimate = {n: float(d.mean()) for n, d in estimate.items()}
    planned = plan_widths(group_exact, widths), plan_widths(group_estimate, widths)
    return {
        "batches": batches_n, "every": every,
        "max_group_error": max(abs(group_exact[n] - group_estimate[n]) for n in exact),
        "max_channel_error": max(float((exact[n] - estimate[n]).abs().max()) for n in exact),
        "max_group_std_across_batches": max(statistics.stdev(h[n] for h in history) for n in exact),
        "planned_widths_that_differ": sum(planned[0][n] != planned[1][n] for n in widths),
        "groups": len(widths),
    }  # fmt: skip


def main() -> None:
    """Run the measurement for each model given and write bench/results/monitor_overhead.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="vgg11:fashion-mnist,vgg19:random,resnet18:random",
        help="comma list of MODEL:DATASET (DATASET 'random' = random CIFAR-shaped batches)",
    )
    parser.add_argument("--steps", type=int, default=30, help="trials per arm")
    parser.add_argument("--every", type=int, default=4, help="the sampled arm counts every k-th step")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--error-batches", type=int, default=0, help="also measure the sampling error")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(RESULTS / "monitor_overhead.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for item in args.models.split(","):
        model_name, dataset = item.split(":")
        arms = measure(model_name, dataset, args.steps, args.batch_size, args.width, args.every, device)
        row = {
            "model": model_name, "dataset": dataset, "batch_size": args.batch_size, "width": args.width,
            "every": args.every, "trials_each": args.steps, "median_step_s": arms,
            "overhead_full_pct": 100 * (arms["full"] / arms["plain"] - 1),
            "overhead_sampled_pct": 100 * (arms["sampled"] / arms["plain"] - 1),
        }  # fmt: skip
        if args.error_batches and dataset != "random":
            row["sampling_error"] = sampling_error(
                model_name, dataset, args.error_batches, args.batch_size, args.width, args.every, device
            )
        rows.append(row)
        print(
            f"{model_name:10s} {dataset:14s} plain {1000 * arms['plain']:8.2f} ms  full "
            f"{row['overhead_full_pct']:+.2f}%  every {args.every}: {row['overhead_sampled_pct']:+.2f}%",
            flush=True,
        )
        if "sampling_error" in row:
            print(f"  sampling error: {row['sampling_error']}", flush=True)
    write_result(args.out, {**machine(device), "rows": rows})


if __name__ == "__main__":
    main()
