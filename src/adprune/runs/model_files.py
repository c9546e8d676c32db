"""Model files of a run: `model.safetensors` plus `arch.json`, written atomically, loaded without pickle.

`load` trusts nothing in a run directory: `arch.json` is checked key by key against the bounds below
before any tensor is allocated, and the weights are read with safetensors, which cannot run code.
The bounds (from `adprune.limits`) reject damaged or hostile files, not real models:

- `in_channels` and every group width: 1 to `MAX_CHANNELS` (65,536);
- `image_size`: 1 to `MAX_IMAGE_SIZE` (4,096), and one input at most `MAX_INPUT_VALUES` (2**26) values;
- `num_classes`: 1 to `MAX_CLASSES` (1,000,000);
- `width` (the channel multiplier): a finite number in (0, `MAX_WIDTH_MULTIPLIER` = 64];
- the dense model that `load` builds before shrinking it: at most `MAX_PARAMETERS` (2**31) parameters,
  counted on the meta device, so without allocating them;
- `arch.json` itself: at most `MAX_ARCH_BYTES` (1 MiB) of UTF-8 JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..errors import AdpruneError
from ..limits import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    MAX_INPUT_VALUES,
    MAX_PARAMETERS,
    MAX_WIDTH_MULTIPLIER,
)
from .atomic import atomic_write_bytes, atomic_write_json
from .pruned_files import shrink_to_record

MODEL_FILE = "model.safetensors"
ARCH_FILE = "arch.json"
ARCH_KEYS = {"model": str, "in_channels": int, "num_classes": int, "image_size": int, "width": (int, float)}
OPTIONAL_ARCH_KEYS = ("mean", "std")
MAX_ARCH_BYTES = 1 << 20
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a pickle (protocol 2+), a torch.save zip


def save_model(
    run_dir: str | Path, model: nn.Module, arch: Mapping[str, Any], widths: Mapping[str, int]
) -> None:
    """Write the model's weights and buffers to `model.safetensors` and its architecture to `arch.json`.

    `arch` names the model as the registry builds it (keys of `ARCH_KEYS`, optionally the input
    normalisation `mean` and `std`); `widths` gives every channel group's width, which is all `load`
    needs to rebuild the pruned shapes.
    """
    run_dir = Path(run_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / MODEL_FILE, save(tensors))
    atomic_write_json(run_dir / ARCH_FILE, {**dict(arch), "widths": dict(widths)})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _known_model(name: str) -> bool:
    from ..models import TIMM_PREFIX, TV_PREFIX, model_names

    if name.startswith(TIMM_PREFIX):  # without timm installed, building it says how to install it
        try:
            import timm
        except ImportError:
            return True
        return timm.is_model(name[len(TIMM_PREFIX) :])
    if name.startswith(TV_PREFIX):
        return name[len(TV_PREFIX) :].lower() in torchvision.models.list_models(module=torchvision.models)
    return name.lower() in model_names()


def _read_arch_object(path: Path) -> object:
    """The JSON value in `path`, size-capped and strictly UTF-8."""
    try:
        if path.stat().st_size > MAX_ARCH_BYTES:
            raise AdpruneError(f"{path} is larger than {MAX_ARCH_BYTES} bytes; the run directory is damaged")
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise AdpruneError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, an integer of thousands of digits
        raise AdpruneError(f"{path} is not valid JSON ({exc}); the run directory is damaged") from None


def _check_arch(arch: Mapping[str, Any]) -> str | None:
    """What is wrong with an `arch.json` object, or None."""
    unknown = set(arch) - set(ARCH_KEYS) - {"widths", *OPTIONAL_ARCH_KEYS}
    if unknown:
        return f"unknown keys {sorted(unknown)}"
    missing = [key for key in (*ARCH_KEYS, "widths") if key not in arch]
    if missing:
        return f"missing keys {missing}"
    if not isinstance(arch["model"], str) or not _known_model(arch["model"]):
        return f"'model' {arch['model']!r} is not a model adprune knows (see 'adprune train --help')"
    bounds = {"in_channels": MAX_CHANNELS, "num_classes": MAX_CLASSES, "image_size": MAX_IMAGE_SIZE}
    for key, top in bounds.items():
        if not _is_int(arch[key]) or not 1 <= arch[key] <= top:
            return f"'{key}' must be an integer from 1 to {top}, got {arch[key]!r}"
    if arch["in_channels"] * arch["image_size"] ** 2 > MAX_INPUT_VALUES:
        return f"an input of in_channels x image_size x image_size exceeds {MAX_INPUT_VALUES} values"
    if not _is_number(arch["width"]) or not 0 < arch["width"] <= MAX_WIDTH_MULTIPLIER:
        return f"'width' must be a number in (0, {MAX_WIDTH_MULTIPLIER:g}], got {arch['width']!r}"
    widths = arch["widths"]
    if not isinstance(widths, dict) or not all(
        _is_int(w) and 1 <= w <= MAX_CHANNELS for w in widths.values()
    ):
        return f"'widths' must map group names to integers from 1 to {MAX_CHANNELS}"
    for key in OPTIONAL_ARCH_KEYS:
        values = arch.get(key)
        if key in arch and not (
            isinstance(values, list)
            and len(values) == arch["in_channels"]
            and all(_is_number(v) and (key == "mean" or v > 0) for v in values)
        ):
            return f"'{key}' must list {arch['in_channels']} finite numbers (positive for std)"
    return None


def read_arch(run_dir: str | Path) -> dict[str, Any]:
    """The validated content of `arch.json`, or an AdpruneError that names the file and the problem.

    Checks the keys (exactly those of `ARCH_KEYS` plus `widths`, optionally `mean` and `std`), their
    JSON types (no bools for numbers, no nulls), the model name, and the bounds in the module
    docstring. Nothing is allocated before every check passed.
    """
    path = Path(run_dir) / ARCH_FILE
    if not path.is_file():
        raise AdpruneError(f"{path} not found: pass a run directory written by 'adprune train'")
    arch = _read_arch_object(path)
    if not isinstance(arch, dict):
        raise AdpruneError(f"{path} must hold a JSON object; the run directory is damaged")
    problem = _check_arch(arch)
    if problem is not None:
        raise AdpruneError(f"{path}: {problem}; the run directory is damaged")
    return arch


def build_dense(arch: Mapping[str, Any], device: torch.device | str = "cpu") -> nn.Module:
    """The freshly initialised dense model an `arch.json` mapping describes, on `device`."""
    from ..models import build_model

    with torch.device(device):
        return build_model(
            arch["model"],
            in_channels=arch["in_channels"],
            num_classes=arch["num_classes"],
            image_size=arch["image_size"],
            width=arch["width"],
        )


def _check_size(arch: Mapping[str, Any], path: Path) -> None:
    """Refuse a model whose dense form has more than `MAX_PARAMETERS` parameters, counted on `meta`.

    Only our own models scale with `width`; a torchvision or timm model's size is fixed by its name.
    """
    from ..models import TIMM_PREFIX, TV_PREFIX

    if arch["model"].startswith((TV_PREFIX, TIMM_PREFIX)):
        return
    count = sum(p.numel() for p in build_dense(arch, "meta").parameters())
    if count > MAX_PARAMETERS:
        raise AdpruneError(
            f"{path} describes a model of {count:,} parameters, more than the {MAX_PARAMETERS:,} adprune "
            "loads; the run directory is damaged"
        )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; anything else (a pickle included) is refused, never run."""
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        try:
            with open(path, "rb") as handle:
                pickled = handle.read(4).startswith(_PICKLE_MAGIC)
        except OSError:
            pickled = False
        what = "a pickle or torch.save file, which adprune never unpickles" if pickled else exc
        raise AdpruneError(f"cannot read {path} ({what}); the run directory is damaged") from None


def load(run_dir: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the (pruned) model saved in `run_dir`, weights loaded, in eval mode. Nothing is unpickled.

    Raises AdpruneError naming the file for a missing, malformed or oversized `arch.json` (see
    `read_arch`) and for a `model.safetensors` that is missing, truncated, not safetensors, or does
    not match the architecture.
    """
    arch = read_arch(run_dir)
    arch_path, path = Path(run_dir) / ARCH_FILE, Path(run_dir) / MODEL_FILE
    _check_size(arch, arch_path)
    model = build_dense(arch, "cpu")
    example_shape = [1, arch["in_channels"], arch["image_size"], arch["image_size"]]
    try:
        shrink_to_record(model, {"widths": arch["widths"], "example_shape": example_shape})
    except AdpruneError as exc:
        raise AdpruneError(f"{arch_path}: {exc}; the run directory is damaged") from None
    state = _read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:2]
        raise AdpruneError(f"{path} does not match {arch_path}: {' '.join(first)}") from None
    return model.to(device).eval()
