"""Saving and loading a pruned model from any training loop: the state dict with the widths beside it.

A pruned model's state dict only loads into a model of the same widths. What rebuilds those widths
is its *shape record*: every channel group's width and the shape of an input that traces the model,
`{"widths": {group: width}, "example_shape": [N, C, H, W]}`. `load_pruned` builds the dense model
the user's code builds, shrinks it to the record (`surgery.shrink_to_widths`) and loads the
weights. The CLI's run folders (`arch.json`) and Lightning checkpoints (`lightning`) keep the same
record and rebuild through the same `shrink_to_record`.

`save_pruned` writes one safetensors file (no pickle: loading it cannot run code) with the record in
the file's metadata under `"adprune"`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from ..errors import AdpruneError
from ..limits import MAX_CHANNELS, MAX_INPUT_VALUES
from ..prune.groups import find_groups
from ..prune.surgery import shrink_to_widths
from ..prune.tp_compat import build_graph
from .atomic import atomic_write_bytes

METADATA_KEY = "adprune"


def shape_record(pruner: Any) -> dict[str, Any]:
    """The shape record (module docstring) of `pruner`'s model as it is now."""
    return {"widths": dict(pruner.widths), "example_shape": list(pruner.example_input.shape)}


def checked_record(record: object, source: str) -> dict[str, Any]:
    """`record` if it is a well-formed shape record (group names to widths in 1..MAX_CHANNELS, an
    example shape of positive ints of at most MAX_INPUT_VALUES values); else AdpruneError naming
    `source`."""
    widths = record.get("widths") if isinstance(record, dict) else None
    shape = record.get("example_shape") if isinstance(record, dict) else None
    ok_widths = isinstance(widths, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CHANNELS
        for k, v in widths.items()
    )
    ok_shape = isinstance(shape, list) and 1 <= len(shape) <= 8
    ok_shape = ok_shape and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    if not ok_widths or not ok_shape or torch.Size(shape).numel() > MAX_INPUT_VALUES:
        raise AdpruneError(
            f"{source} has no valid adprune shape record (group widths and an example input shape): "
            "save the model with adprune.save_pruned"
        )
    return {"widths": dict(widths), "example_shape": list(shape)}


def shrink_to_record(model: nn.Module, record: Mapping[str, Any]) -> None:
    """Shrink the freshly built dense `model`, in place, to the widths of shape record `record` (a model
    already at those widths is left as it is). Raises AdpruneError for widths the model cannot take."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros(record["example_shape"], device=device)
    current = {g.name: g.width for g in find_groups(build_graph(model, example))}
    if any(current.get(name) != width for name, width in record["widths"].items()):
        shrink_to_widths(model, example, record["widths"])


def save_pruned(path: str | Path, pruner: Any, module: nn.Module | None = None) -> None:
    """Write `module`'s state dict (by default the pruner's model; an EMA twin's copy works too) and the
    pruner's shape record to the safetensors file `path`, atomically: an existing file is replaced
    only once the new one is complete."""
    module = pruner.model if module is None else module
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps(shape_record(pruner))}
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def load_pruned(path: str | Path, model: nn.Module, *, strict: bool = True) -> nn.Module:
    """Shrink `model` (built as the training code builds it, dense) to the widths saved in `path` by
    `save_pruned` and load the weights; returns `model`. Nothing is unpickled.

    Raises AdpruneError, naming the file, when it is not a safetensors file written by `save_pruned`,
    or its weights do not fit the model."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise AdpruneError(
            f"cannot read {path} ({exc}): give a file written by adprune.save_pruned"
        ) from None
    try:
        record = json.loads(metadata.get(METADATA_KEY, "null"))
    except json.JSONDecodeError:
        record = None
    record = checked_record(record, str(path))
    try:
        shrink_to_record(model, record)
    except AdpruneError as exc:
        raise AdpruneError(f"{path} does not fit this model: {exc}") from None
    try:
        model.load_state_dict(tensors, strict=strict)
    except RuntimeError as exc:
        first = " ".join(str(exc).strip().splitlines()[:2])
        raise AdpruneError(f"{path} does not fit this model: {first}") from None
    return model
