"""Model files of a run: `model.safetensors` plus `arch.json`, written atomically, loaded without pickle."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .errors import AdpruneError
from .groups import build_graph, find_groups
from .surgery import prune_groups

MODEL_FILE = "model.safetensors"
ARCH_FILE = "arch.json"
ARCH_KEYS = {"model": str, "in_channels": int, "num_classes": int, "image_size": int, "width": (int, float)}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a mix.

    The bytes go to a temporary file in the same directory, are fsynced, then renamed over `path`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; run files are meant to be shared
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """`atomic_write_bytes` of `obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_model(
    run_dir: str | Path, model: nn.Module, arch: Mapping[str, Any], widths: Mapping[str, int]
) -> None:
    """Write the model's weights and buffers to `model.safetensors` and its architecture to `arch.json`.

    `arch` names the model as the registry builds it (keys of `ARCH_KEYS`); `widths` gives every
    channel group's width, which is all `load` needs to rebuild the pruned shapes.
    """
    run_dir = Path(run_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / MODEL_FILE, save(tensors))
    atomic_write_json(run_dir / ARCH_FILE, {**dict(arch), "widths": dict(widths)})


def read_arch(run_dir: str | Path) -> dict[str, Any]:
    """The validated content of `arch.json`, or an AdpruneError that names the file and the problem."""
    path = Path(run_dir) / ARCH_FILE
    if not path.is_file():
        raise AdpruneError(f"{path} not found: pass a run directory written by 'adprune train'")
    try:
        arch = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdpruneError(f"{path} is not valid JSON ({exc}); the run directory is damaged") from None
    if not isinstance(arch, dict):
        raise AdpruneError(f"{path} must hold a JSON object")
    for key, kind in ARCH_KEYS.items():
        if not isinstance(arch.get(key), kind) or isinstance(arch.get(key), bool):
            raise AdpruneError(f"{path}: key '{key}' is missing or not of type {kind}")
    widths = arch.get("widths")
    if not isinstance(widths, dict) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths.values()
    ):
        raise AdpruneError(f"{path}: 'widths' must map group names to positive integers")
    return arch


def shrink_to_widths(model: nn.Module, example_input: torch.Tensor, widths: Mapping[str, int]) -> None:
    """Prune a freshly built dense `model` so every channel group has the width given in `widths`."""
    graph = build_graph(model, example_input)
    groups = find_groups(graph)
    remove = {}
    for group in groups:
        target = widths.get(group.name, group.width)
        if not 1 <= target <= group.width:
            raise AdpruneError(f"width {target} for '{group.name}' is outside 1..{group.width}")
        remove[group.name] = list(range(target, group.width))
    unknown = set(widths) - {g.name for g in groups}
    if unknown:
        raise AdpruneError(f"widths name groups the model does not have: {', '.join(sorted(unknown))}")
    prune_groups(model, graph, groups, remove)


def load(run_dir: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the (pruned) model saved in `run_dir`, weights loaded, in eval mode. Nothing is unpickled."""
    from .models import build_model

    arch = read_arch(run_dir)
    model = build_model(
        arch["model"],
        in_channels=arch["in_channels"],
        num_classes=arch["num_classes"],
        image_size=arch["image_size"],
        width=arch["width"],
    )
    example = torch.zeros(1, arch["in_channels"], arch["image_size"], arch["image_size"])
    shrink_to_widths(model, example, arch["widths"])
    path = Path(run_dir) / MODEL_FILE
    try:
        state = load_file(path)
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise AdpruneError(f"cannot read {path} ({exc}); the run directory is damaged") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:2]
        raise AdpruneError(f"{path} does not match {Path(run_dir) / ARCH_FILE}: {' '.join(first)}") from None
    return model.to(device).eval()
