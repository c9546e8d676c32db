"""Resumable training state: one directory per epoch under `RUN_DIR/checkpoints/`, written atomically.

A checkpoint holds the model weights (`model.safetensors`), the optimizer state keyed by parameter
name (`optimizer.safetensors` plus its hyper-parameters in `state.json`), the RNG states
(`rng.safetensors`) and everything else as JSON in `state.json`: the epoch, the widths, the
scheduler, the pruner's trigger window, events and ledger, and the running wall and energy totals.
Nothing is pickled. Each checkpoint is written into a temporary directory, every file fsynced, then
renamed into place, so a crash at any moment leaves the previous checkpoint intact; the two newest
are kept so that a checkpoint damaged afterwards still has a fallback.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..errors import AdpruneError
from ..limits import MAX_CHANNELS
from .atomic import atomic_directory, atomic_write_bytes, atomic_write_json
from .rundir import CHECKPOINTS

KEEP = 2
_SEP = "|"


@dataclass
class TrainingState:
    """What a checkpoint restores: tensors by name and the JSON state."""

    path: Path
    epoch: int
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    rng: dict[str, torch.Tensor]


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer, names: Mapping[int, str]
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimizer state as `{"param|key": tensor}` plus its param groups with parameter names."""
    tensors = {}
    groups = []
    for group in optimizer.param_groups:
        meta = {k: v for k, v in group.items() if k != "params"}
        meta["params"] = [names[id(p)] for p in group["params"]]
        groups.append(meta)
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if not torch.is_tensor(value):
                    raise AdpruneError(f"optimizer state '{key}' is not a tensor; cannot checkpoint it")
                tensors[f"{names[id(param)]}{_SEP}{key}"] = value.detach().cpu().contiguous()
    return tensors, groups


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    groups: list[dict[str, Any]],
) -> None:
    """Restore what `optimizer_to_tensors` saved into an optimizer built the same way over `model`."""
    params = dict(model.named_parameters())
    names = {id(p): n for n, p in params.items()}
    if len(groups) != len(optimizer.param_groups):
        raise AdpruneError("checkpoint optimizer has a different number of parameter groups")
    for group, meta in zip(optimizer.param_groups, groups, strict=True):
        if [names[id(p)] for p in group["params"]] != meta["params"]:
            raise AdpruneError("checkpoint optimizer lists other parameters than the model has")
        group.update({k: v for k, v in meta.items() if k != "params"})
    optimizer.state.clear()
    for flat, value in tensors.items():
        name, key = flat.split(_SEP, 1)
        param = params[name]
        optimizer.state.setdefault(param, {})[key] = value.to(param.device)


def rng_tensors() -> dict[str, torch.Tensor]:
    """Every torch random generator's state (CPU, and each CUDA device)."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = state
    return states


def restore_rng(states: Mapping[str, torch.Tensor]) -> None:
    """Set the random generators back to `rng_tensors()`'s snapshot."""
    torch.set_rng_state(states["cpu"])
    if torch.cuda.is_available():
        cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _epoch_dir(run_dir: Path, epoch: int) -> Path:
    return run_dir / CHECKPOINTS / f"epoch-{epoch:04d}"


def save_training_state(
    run_dir: str | Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: Mapping[str, Any],
    pinned: Iterable[int] = (),
) -> Path:
    """Write the checkpoint of the end of `epoch` atomically; keep it, the one before it and those of
    the epochs in `pinned` (which a roll back may still need), and remove the rest."""
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    root.mkdir(exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer_tensors, groups = optimizer_to_tensors(optimizer, names)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    final = _epoch_dir(run_dir, epoch)
    with atomic_directory(final) as tmp:
        atomic_write_bytes(tmp / "model.safetensors", save(weights))
        atomic_write_bytes(tmp / "optimizer.safetensors", save(optimizer_tensors))
        atomic_write_bytes(tmp / "rng.safetensors", save(rng_tensors()))
        atomic_write_json(tmp / "state.json", {**dict(state), "epoch": epoch, "optimizer_groups": groups})
    keep = {_epoch_dir(run_dir, e).name for e in pinned}
    for old in sorted(root.glob("epoch-*"))[:-KEEP]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".epoch-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _whole(value: Any, low: int = 0, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_state(state: Any) -> str | None:
    """What is wrong with a checkpoint's `state.json` content, or None: every field `--resume` reads,
    with its JSON type and bounds (widths are channel counts in 1..MAX_CHANNELS)."""
    if not isinstance(state, dict):
        return "it is not a JSON object"
    checks = {
        "epoch": _whole(state.get("epoch")),
        "widths": isinstance(state.get("widths"), dict)
        and all(isinstance(k, str) and _whole(w, 1, MAX_CHANNELS) for k, w in state["widths"].items()),
        "scheduler": isinstance(state.get("scheduler"), dict),
        "pruner": isinstance(state.get("pruner"), dict)
        and all(isinstance(state["pruner"].get(k), list) for k in ("events", "ledger")),
        "optimizer_groups": isinstance(state.get("optimizer_groups"), list)
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in state["optimizer_groups"]),
        "wall_total": isinstance(state.get("wall_total"), dict)
        and all(_finite(v) for v in state["wall_total"].values()),
        "energy_j": state.get("energy_j") is None or _finite(state["energy_j"]),
        "flops_extra": _whole(state.get("flops_extra", 0)),
    }
    bad = [key for key, ok in checks.items() if not ok]
    return None if not bad else f"state.json has a missing or invalid {', '.join(bad)}"


def read_checkpoint(path: Path) -> TrainingState:
    """The checkpoint in directory `path`, its state checked by `check_state`; AdpruneError naming
    the checkpoint when a file is missing, unreadable or invalid."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        problem = check_state(state)
        if problem is not None:
            raise AdpruneError(f"checkpoint {path} is damaged ({problem})")
        return TrainingState(
            path,
            state["epoch"],
            state,
            load_file(path / "model.safetensors"),
            load_file(path / "optimizer.safetensors"),
            load_file(path / "rng.safetensors"),
        )
    except (OSError, ValueError, SafetensorError) as exc:
        raise AdpruneError(f"checkpoint {path} is damaged ({exc})") from None


def read_training_state(run_dir: str | Path, epoch: int) -> TrainingState:
    """The checkpoint of the end of `epoch` (0: the state before training); AdpruneError when it is
    missing or damaged."""
    path = _epoch_dir(Path(run_dir), epoch)
    if not path.is_dir():
        raise AdpruneError(f"checkpoint {path} is missing: it was removed or never written")
    return read_checkpoint(path)


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The checkpoint directories of `run_dir`, newest first (empty before the first checkpoint)."""
    return sorted((Path(run_dir) / CHECKPOINTS).glob("epoch-*"), reverse=True)
