"""Prune your own model while it trains: residual adds, concatenation and functional activations.

    python examples/custom_model.py

ADPruner finds the channel groups of any traceable model with Torch-Pruning's dependency graph:
the convs whose outputs a residual connection adds share one width, concatenated branches keep
their own widths, and densities are counted on the tensors the next layers read, whether the
activation is a module or a call to `F.relu` / `F.silu`. The data here is synthetic (labels from a
fixed random teacher), so the script runs anywhere in seconds.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import adprune


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)
    )


class MixedNet(nn.Module):
    """stem -> residual block (F.relu) -> two concatenated branches (F.silu) -> strided conv -> head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, width)
        self.res_a = conv_bn(width, width)
        self.res_b = conv_bn(width, width)
        self.left = conv_bn(width, width // 2, kernel=1)
        self.right = conv_bn(width, width // 2, kernel=3)
        self.down = conv_bn(width, 2 * width, stride=2)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(x + self.res_b(F.relu(self.res_a(x))))  # residual add: stem and res_b share a width
        x = torch.cat([F.silu(self.left(x)), F.silu(self.right(x))], dim=1)  # concatenation
        x = F.silu(self.down(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--prune-at", type=int, nargs="*", default=[1], help="epochs to prune at (0-based)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    model = MixedNet()
    teacher = torch.randn(3, 10)  # labels: which of 10 random colour directions an image leans to

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(args.batch_size, 3, 16, 16)
        return images, (images.mean((2, 3)) @ teacher).argmax(1)

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    widths = adprune.DensityPlan(min_channels=2)
    example = torch.zeros(2, 3, 16, 16)
    pruner = adprune.ADPruner(model, example, optimizer, trigger=args.prune_at, widths=widths)
    params_before, widths_before = sum(p.numel() for p in model.parameters()), pruner.widths
    print(f"groups and widths before: {widths_before}  ({params_before:,} parameters)")
    for group in pruner.groups:  # the residual add couples the stem with res_b: one group, one width
        print(f"  {group.name}: {', '.join(group.members)}")
    for epoch in range(args.epochs):
        model.train()
        for _ in range(args.steps):
            images, labels = batch()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
        pruner.epoch_end(epoch, last=epoch == args.epochs - 1)
        density = " ".join(f"{name}={d:.2f}" for name, d in pruner.densities.items())
        print(f"epoch {epoch}  loss {loss.item():.3f}  densities {density}")
        if pruner.ledger[-1].decided:
            print("  prune decided: its channels fade out during the next epoch")
        if pruner.ledger[-1].pruned:
            print(f"  pruned: widths {pruner.widths}")
    params_after = sum(p.numel() for p in model.parameters())
    print(f"groups and widths after:  {pruner.widths}  ({params_after:,} parameters)")
    return {
        "widths_before": widths_before,
        "widths_after": pruner.widths,
        "params_before": params_before,
        "params_after": params_after,
    }


if __name__ == "__main__":
    main()
