"""Prune a timm model inside a loop written in timm's style: channels-last, mixed precision, an EMA
copy of the weights, torch.compile, gradient clipping and a cosine schedule (the order of timm's
train.py), with ADPruner driving the prunes once per epoch.

    python examples/timm_loop.py --model resnet18d --epochs 12 --prune-at 3 6
    python examples/timm_loop.py --compile-backend none        # no compilation

The data are synthetic (each class a fixed random pattern plus noise) so the example runs anywhere;
swap in your own DataLoader. Needs timm: pip install 'adprune[timm]'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import adprune


def synthetic_batches(images: int, batch: int, classes: int, seed: int):
    """A fixed set of learnable 3x32x32 images: class pattern plus noise, in batches."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, 3, 32, 32, generator=g)
    labels = torch.randint(0, classes, (images,), generator=g)
    x = patterns[labels] + 0.8 * torch.randn(images, 3, 32, 32, generator=g)
    return [(x[i : i + batch], labels[i : i + batch]) for i in range(0, images, batch)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18d")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--prune-at", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile-backend", default="inductor", help="a torch.compile backend, or none")
    parser.add_argument("--out", type=Path, default=Path("runs/timm_loop"))
    args = parser.parse_args(argv)
    try:
        import timm
        from timm.utils import ModelEmaV3
    except ImportError:
        print("this example needs timm: pip install 'adprune[timm]'", file=sys.stderr)
        return 2

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    train_batches = synthetic_batches(args.images, args.batch_size, 10, seed=0)
    val_batches = synthetic_batches(512, 256, 10, seed=0)[-2:]

    # timm's train.py order: model, device, channels-last, optimizer, AMP, EMA, then compile.
    model = timm.create_model(args.model, pretrained=False, num_classes=10).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    ema = ModelEmaV3(model, decay=0.99)
    # Each prune changes shapes: one recompile per prune, and more where a fade's BatchNorm
    # re-estimation (momentum None) breaks the graph into per-block frames that then differ in width.
    torch._dynamo.config.recompile_limit = 64
    trained = model if args.compile_backend == "none" else torch.compile(model, backend=args.compile_backend)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    example = train_batches[0][0][:8].to(device, memory_format=torch.channels_last)
    # The pruner takes the compiled wrapper (it prunes the module inside), the optimizer and the EMA twin.
    pruner = adprune.ADPruner(trained, example, optimizer, trigger=args.prune_at, twins=[ema])
    dense = sum(p.numel() for p in model.parameters())
    groups, skipped = len(pruner.widths), len(pruner.skipped)
    print(f"{args.model}: {dense:,} parameters, {groups} channel groups, {skipped} left alone")

    step = 0
    for epoch in range(args.epochs):
        model.train()
        for x, y in train_batches:
            x = x.to(device, memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype):
                loss = F.cross_entropy(trained(x), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            ema.update(model, step=step)
        scheduler.step()
        event = pruner.epoch_end(epoch, last=epoch == args.epochs - 1)
        if (
            event is not None
        ):  # model, optimizer state and EMA are already cut; the compiled wrapper recompiles
            print(f"epoch {epoch}: pruned {event.params_before:,} -> {event.params_after:,} parameters")
        ema_accuracy = accuracy(ema.module, val_batches, device)
        print(f"epoch {epoch}: loss {loss.item():.3f}, EMA accuracy {ema_accuracy:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    adprune.save_pruned(args.out / "model.safetensors", pruner)
    adprune.save_pruned(args.out / "ema.safetensors", pruner, module=ema.module)
    pruned = sum(p.numel() for p in model.parameters())
    print(f"saved {args.out}: {pruned:,} parameters ({dense / pruned:.2f}x fewer)")
    return 0


def accuracy(model: torch.nn.Module, batches, device: torch.device) -> float:
    """Share of correct predictions of `model` in eval mode."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            prediction = model(x.to(device, memory_format=torch.channels_last)).argmax(1).cpu()
            correct += int((prediction == y).sum())
            total += len(y)
    return correct / total


if __name__ == "__main__":
    raise SystemExit(main())
