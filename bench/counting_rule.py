"""Which tensor a residual network's channel groups read their density from, compared in training.

Three rules, each used to prune torchvision's ResNet-18 (its 7x7 stem, max-pool and four residual
stages, adapted to one input channel) trained on Fashion-MNIST, pruned at fixed epochs:

- `readers` (adprune's rule): every tensor the next layers read through an activation, each once;
  tensors read only through pooling (the stage behind the max-pool, the classifier behind global
  pooling) are not counted.
- `all-readers` (adprune before this rule): the input of every consumer layer, pooled ones included.
- `producers`: the output of each of the group's normalisation layers, before the residual sum
  (the share of positive pre-activations of the convs that write into the stream).

Per rule and seed the same initial weights, data order and schedule; only the densities handed to
`ADPruner.prune` differ. The result lists each prune's group densities and widths, the final
parameters and the test accuracy (mean and sample standard deviation over the seeds).

    OMP_NUM_THREADS=2 python bench/counting_rule.py --seeds 3 --subset 3000 --epochs 8 --prune-at 2,4
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import machine, write_result

from adprune.models import build_model
from adprune.prune.cost import count_parameters
from adprune.prune.density import DensityMonitor
from adprune.prune.groups import ChannelGroup, Probe
from adprune.prune.pruner import ADPruner
from adprune.prune.widths import DensityPlan
from adprune.train.data import BatchLoader, load_dataset

RESULTS = Path(__file__).parent / "results"
RULES = ("readers", "all-readers", "producers")
_NORM = torch.nn.modules.batchnorm._BatchNorm


def rule_groups(rule: str, pruner: ADPruner) -> list[ChannelGroup]:
    """The pruner's groups with the probes of `rule`."""
    if rule == "readers":
        return pruner.groups
    if rule == "all-readers":
        return [dataclasses.replace(g, probes=g.readers) for g in pruner.groups]
    groups = []
    for group in pruner.groups:
        everything = tuple(range(group.width))
        norms = [m for m in group.members if isinstance(pruner.model.get_submodule(m), _NORM)]
        probes = tuple(Probe(m, True, everything, everything) for m in norms or group.members[:1])
        groups.append(dataclasses.replace(group, probes=probes))
    return groups


def _epoch(model, optimizer, loader) -> float:
    model.train()
    correct = torch.zeros(())
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        F.cross_entropy(logits, labels).backward()
        optimizer.step()
        correct += (logits.detach().argmax(1) == labels).sum()
    return float(correct) / (len(loader) * loader.batch_size)


@torch.no_grad()
def _test_accuracy(model, loader) -> float:
    model.eval()
    return sum(int((model(x).argmax(1) == y).sum()) for x, y in loader) / loader.num_samples


def run_rule(rule: str, seed: int, data, args: argparse.Namespace) -> dict[str, Any]:
    """Train and prune one network with the densities of `rule`; its prunes and final figures."""
    torch.manual_seed(seed)
    model = build_model("tv:resnet18", in_channels=1, num_classes=10, image_size=32)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    pruner = ADPruner(
        model, torch.zeros(2, 1, 32, 32), optimizer, trigger=[], widths=DensityPlan(min_channels=4)
    )
    monitor = DensityMonitor(model, rule_groups(rule, pruner))
    train = BatchLoader(data.train_images, data.train_labels, batch_size=128, mean=data.mean, std=data.std,
                        train=True, augment=data.augment, seed=seed, drop_last=True)  # fmt: skip
    test = BatchLoader(data.test_images, data.test_labels, batch_size=1000, mean=data.mean, std=data.std)
    prunes, train_accs = [], []
    for epoch in range(1, args.epochs + 1):
        train.set_epoch(epoch)
        train_accs.append(_epoch(model, optimizer, train))
        pruner.epoch_end(epoch)
        densities = monitor.read()
        monitor.reset()
        if epoch in args.prune_at:
            before = pruner.widths
            event = pruner.prune(epoch, densities)
            monitor.detach()
            monitor = DensityMonitor(model, rule_groups(rule, pruner))
            prunes.append({
                "epoch": epoch, "density": {n: round(float(d.mean()), 4) for n, d in densities.items()},
                "widths_before": before, "widths_after": event.widths_after,
                "params_after": event.params_after,
            })  # fmt: skip
        schedule.step()
    return {"rule": rule, "seed": seed, "test_acc": _test_accuracy(model, test),
            "params": count_parameters(model), "train_acc": train_accs, "prunes": prunes}  # fmt: skip


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rule: test accuracy mean and sample standard deviation, mean parameters."""
    out = {}
    for rule in RULES:
        mine = [r for r in runs if r["rule"] == rule]
        accs = [r["test_acc"] for r in mine]
        out[rule] = {
            "test_acc": statistics.fmean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "test_accs": accs,
            "params": statistics.fmean(r["params"] for r in mine),
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--prune-at", default="2,4")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default=str(RESULTS / "counting_rule.json"))
    args = parser.parse_args()
    args.prune_at = [int(e) for e in args.prune_at.split(",")]
    data = load_dataset("fashion-mnist", subset=args.subset)
    started = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        for rule in RULES:  # interleaved, so machine noise hits every rule alike
            runs.append(run_rule(rule, seed, data, args))
            print(rule, seed, f"test {100 * runs[-1]['test_acc']:.2f}%", f"params {runs[-1]['params']:,}",
                  flush=True)  # fmt: skip
    result = {"model": "tv:resnet18", "dataset": "fashion-mnist", "options": vars(args),
              "summary": summarise(runs), "runs": runs, "seconds": time.perf_counter() - started,
              "machine": machine("cpu")}  # fmt: skip
    write_result(args.out, result)
    for rule, row in result["summary"].items():
        std = row["test_acc_std"] or 0.0
        print(f"{rule:12s} {100 * row['test_acc']:.2f} ± {100 * std:.2f}  params {row['params']:,.0f}")


if __name__ == "__main__":
    main()
