"""Training-step time with and without the density monitor, measured side by side in one process.

Steps alternate between monitored and unmonitored (hooks attached and removed between steps), so
machine noise hits both arms alike; the result is the ratio of the two medians.

    python bench/monitor_overhead.py --model vgg11 --dataset fashion-mnist --steps 60
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


def measure(model_name: str, dataset: str, steps: int, batch_size: int, width: float, device: torch.device):
    """Median step seconds without and with the monitor, over `steps` interleaved pairs of steps."""
    channels, size = (1, 32) if dataset in ("fashion-mnist", "mnist") else (3, 32)
    model = build_model(model_name, in_channels=channels, num_classes=10, width=width).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    groups = find_groups(build_graph(model, torch.zeros(1, channels, size, size, device=device)))
    batches = _batches(dataset, batch_size, device, channels, size)
    model.train()

    def step() -> float:
        images, labels = next(batches)
        _sync(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()
        _sync(device)
        return time.perf_counter() - started

    for _ in range(5):
        step()
    plain, monitored = [], []
    monitor = None
    for i in range(2 * steps):
        if (i % 2 == 0) == ((i // 2) % 2 == 0):  # ABBA order cancels slow drifts
            plain.append(step())
        else:
            monitor = DensityMonitor(model, groups)
            monitored.append(step())
            monitor.detach()
    assert monitor is not None and monitor.read()
    return statistics.median(plain), statistics.median(monitored)


def main() -> None:
    """Run the measurement for each model given and write bench/results/monitor_overhead.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="vgg11:fashion-mnist,vgg19:random,resnet18:random",
        help="comma list of MODEL:DATASET (DATASET 'random' = random CIFAR-shaped batches)",
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(RESULTS / "monitor_overhead.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for item in args.models.split(","):
        model_name, dataset = item.split(":")
        plain, monitored = measure(model_name, dataset, args.steps, args.batch_size, args.width, device)
        row = {
            "model": model_name,
            "dataset": dataset,
            "batch_size": args.batch_size,
            "width": args.width,
            "steps_each": args.steps,
            "median_step_s_plain": plain,
            "median_step_s_monitored": monitored,
            "overhead_pct": 100 * (monitored / plain - 1),
        }
        rows.append(row)
        print(
            f"{model_name:10s} {dataset:14s} plain {1000 * plain:8.2f} ms  "
            f"monitored {1000 * monitored:8.2f} ms  overhead {row['overhead_pct']:+.2f}%",
            flush=True,
        )
    write_result(args.out, {**machine(device), "rows": rows})


if __name__ == "__main__":
    main()
