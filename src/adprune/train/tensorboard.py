"""Optional TensorBoard logging of each epoch's record (`adprune train --tensorboard`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCALARS = ("train_loss", "train_acc", "val_acc", "test_loss", "test_acc", "params", "macs",
           "train_flops_total", "lr")  # fmt: skip


def log_epoch(writer: Any, record: Mapping[str, Any]) -> None:
    """Write an epoch record's scalars, per-layer densities and widths to a SummaryWriter, at step = epoch."""
    epoch = record["epoch"]
    for key in SCALARS:
        if record.get(key) is not None:
            writer.add_scalar(f"adprune/{key}", record[key], epoch)
    for layer, density in record["density"].items():
        writer.add_scalar(f"density/{layer}", density, epoch)
    for layer, width in record["widths_after"].items():
        writer.add_scalar(f"width/{layer}", width, epoch)
    writer.flush()
