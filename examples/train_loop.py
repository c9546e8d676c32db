"""Activation-density pruning inside your own PyTorch training loop, on Fashion-MNIST.

    python examples/train_loop.py --epochs 3 --subset 3000

The loop is plain PyTorch; adprune adds three lines: build the pruner, train as usual (the pruner's
hooks count activation densities during the training forwards), and close each epoch with
`pruner.epoch_end(epoch)`, which may shrink the model and remap the optimizer in place. The data
comes from `adprune.train.data` (the whole dataset as tensors, augmentation as tensor ops); any
DataLoader works the same way.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import adprune
from adprune.models import build_model
from adprune.train.data import BatchLoader, load_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--subset", type=int, default=3000, help="training samples to use (default 3000)")
    parser.add_argument("--test-subset", type=int, default=2000, help="test samples to evaluate on")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--model", default="vgg11", help="a name of adprune.models.model_names()")
    parser.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    parser.add_argument(
        "--prune-at",
        default="1",
        help="comma-separated epochs to prune at (0-based), or 'auto' to prune when the densities converge",
    )
    parser.add_argument(
        "--data-dir", default=None, help="where Fashion-MNIST is (default: adprune's data dir)"
    )
    parser.add_argument("--download", action="store_true", help="download Fashion-MNIST if it is missing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def train_one_epoch(model, optimizer, loader) -> tuple[float, float]:
    model.train()
    total_loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device)
    seen = 0
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * labels.numel()
        correct += (logits.argmax(1) == labels).sum()
        seen += labels.numel()
    return total_loss.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model, loader) -> float:
    model.eval()
    correct = sum(int((model(images).argmax(1) == labels).sum()) for images, labels in loader)
    return correct / loader.num_samples


def main(argv: list[str] | None = None) -> dict[str, list]:
    args = parse_args(argv)
    torch.manual_seed(0)
    data = load_dataset("fashion-mnist", args.data_dir, download=args.download, subset=args.subset)
    train = BatchLoader(
        data.train_images,
        data.train_labels,
        batch_size=args.batch_size,
        mean=data.mean,
        std=data.std,
        device=args.device,
        train=True,
        augment=data.augment,
    )
    test_count = min(args.test_subset, len(data.test_labels))
    test = BatchLoader(
        data.test_images[:test_count],
        data.test_labels[:test_count],
        batch_size=512,
        mean=data.mean,
        std=data.std,
        device=args.device,
    )
    model = build_model(
        args.model, in_channels=data.in_channels, num_classes=data.num_classes, width=args.width
    )
    model = model.to(args.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    prune_at = None if args.prune_at == "auto" else [int(e) for e in args.prune_at.split(",") if e.strip()]
    example_input = data.train_images[:2].float().to(args.device)  # any batch shaped like the inputs

    # -- the adprune lines ------------------------------------------------------------------------
    pruner = adprune.ADPruner(model, example_input, optimizer, trigger=prune_at)
    params = [sum(p.numel() for p in model.parameters())]
    history: dict[str, list] = {"params": params, "test_acc": [], "density": [], "widths": []}
    print(f"{args.model} x{args.width}: {params[0]:,} parameters, {len(pruner.widths)} channel groups")
    for epoch in range(args.epochs):
        train.set_epoch(epoch)
        started = time.perf_counter()
        train_loss, train_acc = train_one_epoch(model, optimizer, train)  # the monitor counts here
        test_acc = evaluate(model, test)  # eval-mode forwards are not counted
        pruner.epoch_end(epoch, last=epoch == args.epochs - 1)  # may shrink model and optimizer in place
        scheduler.step()  # the schedule goes on: the optimizer object is the same one
        # -----------------------------------------------------------------------------------------
        density = sum(pruner.densities.values()) / len(pruner.densities)
        params.append(sum(p.numel() for p in model.parameters()))
        history["test_acc"].append(test_acc)
        history["density"].append(density)
        history["widths"].append(pruner.widths)
        pruned = f"  -> pruned to {params[-1]:,}" if pruner.ledger[-1].pruned else ""
        print(
            f"epoch {epoch}  loss {train_loss:.3f}  train acc {train_acc:.3f}  test acc {test_acc:.3f}  "
            f"density {density:.3f}  params {params[-2]:,}  {time.perf_counter() - started:.1f}s{pruned}"
        )
        print("  densities  " + " ".join(f"{d:.2f}" for d in pruner.densities.values()))
        print("  widths now " + " ".join(str(w) for w in pruner.widths.values()))
    if pruner.skipped:
        print("left alone:", "; ".join(f"{name}: {why}" for name, why in pruner.skipped.items()))
    return history


if __name__ == "__main__":
    main()
