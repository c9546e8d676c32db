"""How much of a pruned network's MAC reduction becomes real step time, against its dense run.

Both trained models are loaded from their run directories and timed side by side in one process on
random inputs of their input shape: training steps (forward, cross-entropy backward, SGD momentum
step) and inference forwards (eval mode, no grad). Arms, each in both memory layouts (contiguous and
channels-last), optionally compiled (`--compile`):

- `dense`: the dense model;
- `pruned`: the pruned model as `adprune.load` rebuilds it (Torch-Pruning surgery on a dense build);
- `fresh`: the same widths in newly constructed layers (what surgery should cost nothing against);
- `round-R`: the pruned widths rounded up to multiples of R (for each R of `--round-to`), fresh.

Arms run one step each in turn, the order rotating from round to round, so machine noise hits them
alike. Each arm's speed-up is dense's median step time (same layout, same compile option) over its
own; divided by the MAC ratio (dense / arm inference MACs of one sample) it is the share of the
theoretical saving that is realised.

    python bench/realised_speedup.py --dense runs/dense --pruned runs/adp-inherit --round-to 1,4,8,16
"""

from __future__ import annotations

import argparse
import copy
import math
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
from adprune.prune.groups import find_groups
from adprune.prune.surgery import shrink_to_widths
from adprune.prune.tp_compat import build_graph
from adprune.runs.model_files import build_dense, read_arch

RESULTS = Path(__file__).parent / "results"
SAME_KEYS = ("in_channels", "image_size", "num_classes")  # both models must agree on these
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_like(model: nn.Module) -> nn.Module:
    """A copy of `model` whose convolutions, linear layers and norms are newly constructed with the
    same shapes (and the same weights): no trace of the surgery that shaped them."""
    fresh = copy.deepcopy(model)
    for name, module in list(fresh.named_modules()):
        if isinstance(module, nn.Conv2d):
            shape = (module.in_channels, module.out_channels, module.kernel_size, module.stride)
            new = nn.Conv2d(*shape, module.padding, module.dilation, module.groups, module.bias is not None)
        elif isinstance(module, nn.Linear):
            new = nn.Linear(module.in_features, module.out_features, module.bias is not None)
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(module.num_features)
        else:
            continue
        new.load_state_dict(module.state_dict())
        parent, _, attr = name.rpartition(".")
        setattr(fresh.get_submodule(parent), attr, new)
    return fresh


def rounded(dense_arch: dict[str, Any], widths: dict[str, int], multiple: int) -> nn.Module:
    """The dense architecture shrunk to `widths` rounded up to `multiple` (never above the dense width)."""
    model = build_dense(dense_arch)
    example = torch.zeros(2, dense_arch["in_channels"], dense_arch["image_size"], dense_arch["image_size"])
    full = {g.name: g.width for g in find_groups(build_graph(model, example))}
    target = {n: min(full[n], math.ceil(w / multiple) * multiple) for n, w in widths.items() if n in full}
    shrink_to_widths(model, example, target)
    return fresh_like(model)


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
    models: dict[str, nn.Module],
    train: bool,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    warmup: int,
) -> dict[str, float]:
    """Median seconds of a step of every model, over `steps` rounds in rotating order."""
    device = images.device
    arms = {}
    for name, model in models.items():
        model.train(train)
        arms[name] = _stepper(model, train, images, labels)

    def timed(step: Callable[[], None]) -> float:
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        return time.perf_counter() - started

    for _ in range(warmup):
        for step in arms.values():
            step()
    names = list(arms)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i in range(steps):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            seconds[name].append(timed(arms[name]))
    return {name: statistics.median(values) for name, values in seconds.items()}


def _load(run_dir: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of `run_dir` on `device` and its architecture; AdpruneError when unloadable."""
    arch = read_arch(run_dir)
    return adprune.load(run_dir, device), arch


def _arms(dense: nn.Module, pruned: nn.Module, arch: dict, pruned_arch: dict, multiples: list[int]) -> dict:
    models = {"dense": dense, "pruned": pruned, "fresh": fresh_like(pruned)}
    for multiple in multiples:
        models[f"round-{multiple}"] = rounded(arch, pruned_arch["widths"], multiple)
    return models


def _row(name, layout, compiled, mode, seconds, dense_seconds, macs, params) -> dict[str, Any]:
    speedup, mac_ratio = dense_seconds / seconds, macs["dense"] / macs[name]
    return {"arm": name, "layout": layout, "compiled": compiled, "mode": mode, "median_step_s": seconds,
            "speedup": speedup, "mac_ratio": mac_ratio, "macs": macs[name], "params": params[name],
            "realised_share": None if name == "dense" else speedup / mac_ratio}  # fmt: skip


def _line(row: dict[str, Any]) -> str:
    share = "" if row["realised_share"] is None else f"realised {100 * row['realised_share']:5.1f}%"
    kind = "compiled" if row["compiled"] else "eager"
    return (
        f"{row['layout']:13s} {kind:8s} {row['mode']:5s} {row['arm']:9s} "
        f"{1000 * row['median_step_s']:8.2f} ms  speed-up {row['speedup']:5.2f}x  "
        f"MACs x{row['mac_ratio']:5.2f}  {share}"
    )


def main(argv: list[str] | None = None) -> None:
    """Time both runs' models and write bench/results/realised_speedup.json; exit 2 on a bad run dir."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True, help="run directory of the dense (unpruned) model")
    parser.add_argument("--pruned", required=True, help="run directory of the pruned model")
    parser.add_argument("--round-to", default="1,8", help="comma list of width multiples to try")
    parser.add_argument("--layouts", default="contiguous,channels-last", help="comma list of layouts")
    parser.add_argument("--compile", action="store_true", help="also time every arm compiled")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per arm, layout and mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per arm first")
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
    multiples = [int(m) for m in args.round_to.split(",") if m]
    base = {k: m.to(device) for k, m in _arms(dense, pruned, arch, pruned_arch, multiples).items()}
    example = torch.zeros(1, *shape, device=device)
    macs = {name: inference_macs(model, example) for name, model in base.items()}
    params = {name: count_parameters(model) for name, model in base.items()}
    rows = []
    for layout in args.layouts.split(","):
        for compiled in (False, True) if args.compile else (False,):
            images = torch.randn(args.batch_size, *shape, device=device).contiguous(
                memory_format=LAYOUTS[layout]
            )
            labels = torch.randint(0, arch["num_classes"], (args.batch_size,), device=device)
            models = {name: copy.deepcopy(m).to(memory_format=LAYOUTS[layout]) for name, m in base.items()}
            if compiled:
                models = {name: torch.compile(m) for name, m in models.items()}
            for mode in ("train", "eval"):
                seconds = measure(models, mode == "train", images, labels, args.steps, args.warmup)
                for name, arm_s in seconds.items():
                    rows.append(_row(name, layout, compiled, mode, arm_s, seconds["dense"], macs, params))
                    print(_line(rows[-1]), flush=True)
    result = {
        **machine(device), "dense": args.dense, "pruned": args.pruned, "model": arch["model"],
        "input_shape": shape, "batch_size": args.batch_size, "steps_each": args.steps, "warmup": args.warmup,
        "dense_macs": macs["dense"], "pruned_macs": macs["pruned"], "dense_params": params["dense"],
        "pruned_params": params["pruned"], "rows": rows,
    }  # fmt: skip
    write_result(args.out, result)


if __name__ == "__main__":
    main()
