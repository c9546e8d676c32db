"""What ADPruner makes of timm's CNN families: groups found, groups left alone and why, seconds to build
the pruner, parameters before and after one prune, and the loss of a training step after the cut.

Each model is built with `pretrained=False, num_classes=10` and traced on a (2, 3, 64, 64) batch; the
prune gives every group densities rising linearly from 0.05 to 0.95 over its channels (the default
`DensityPlan` then keeps about half of each group). The families are those of
`tests/test_zoo.py`, which asserts the same on every run of the suite.

    OMP_NUM_THREADS=1 python bench/timm_families.py            # writes results/timm_families.{json,md}
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings
from pathlib import Path

import timm
import torch
from _common import machine, write_result

from adprune import ADPruner

RESULTS = Path(__file__).parent / "results"
FAMILIES = [
    "resnet10t", "resnet18d", "efficientnet_b0", "mobilenetv3_small_050", "regnety_002", "convnext_atto",
    "ghostnet_050", "densenet121", "dla34", "cspresnet50", "hrnet_w18_small", "repvgg_a0",
    "res2net50_14w_8s", "skresnet18", "rexnet_100", "dpn68",
]  # fmt: skip


def _reason_kind(reason: str) -> str:
    """A reason without the layer names and shapes in it, to count alike reasons together."""
    kinds = ("linear bottleneck", "only after pooling", "reshape", "split", "breaks the model", "ran past",
             "mapping fails", "attention", "cannot follow")  # fmt: skip
    for kind in kinds:
        if kind in reason:
            return kind
    return reason[:60]


def measure(name: str) -> dict:
    """One family's row (module docstring)."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = ADPruner(model, x, optimizer, fade=0)
        build_s = time.perf_counter() - started
        before = sum(p.numel() for p in model.parameters())
        model.train()
        model(x).logsumexp(-1).mean().backward()
        optimizer.step()
        started = time.perf_counter()
        pruner.prune(0, {g: torch.linspace(0.05, 0.95, w) for g, w in pruner.widths.items()})
        prune_s = time.perf_counter() - started
    optimizer.zero_grad()
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    return {
        "model": name, "params_before": before, "params_after": sum(p.numel() for p in model.parameters()),
        "pruned_groups": len(pruner.widths),
        "skipped": dict(collections.Counter(map(_reason_kind, pruner.skipped.values()))),
        "build_s": round(build_s, 2), "prune_s": round(prune_s, 2), "loss_after_cut": float(loss.detach()),
    }  # fmt: skip


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    header = "| timm model | params | after a prune | groups pruned | left alone (why) | build s | prune s |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        why = ", ".join(f"{n} {k}" for k, n in sorted(r["skipped"].items(), key=lambda kv: -kv[1])) or "none"
        lines.append(
            f"| {r['model']} | {r['params_before'] / 1e6:.2f}M | {r['params_after'] / 1e6:.2f}M | "
            f"{r['pruned_groups']} | {sum(r['skipped'].values())}: {why} | {r['build_s']} | {r['prune_s']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    args = parser.parse_args()
    rows = [measure(name) for name in args.models.split(",")]
    write_result(
        RESULTS / "timm_families.json", {"machine": machine("cpu"), "timm": timm.__version__, "rows": rows}
    )
    (RESULTS / "timm_families.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
