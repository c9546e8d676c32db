"""The run directory: where a run's config, per-epoch metrics, summary and model live."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from .atomic import append_line_synced, atomic_write_bytes

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINTS = "checkpoints"


def refuse_used_run_dir(out: str | Path, *, overwrite: bool) -> None:
    """Raise AdpruneError when `out` is a file, or a non-empty directory without `overwrite`.

    Reads only: run it before anything slow (reading a dataset) so a used `--out` is refused at once.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AdpruneError(f"--out {out} is a file, not a directory: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise AdpruneError(f"--out {out} exists and is not empty: choose another --out or pass --overwrite")


def prepare_run_dir(out: str | Path, *, overwrite: bool) -> Path:
    """Create `out` (and parents) for a new run and check it can be written.

    An existing non-empty directory is refused unless `overwrite` (`refuse_used_run_dir`); then the
    files of the earlier run are removed, its checkpoints included (a resume of the new run must
    never restore the old one's), and anything else in the directory stays.
    """
    out = Path(out)
    refuse_used_run_dir(out, overwrite=overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".adprune-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise AdpruneError(
            f"cannot write to --out {out} ({exc.strerror}): choose a writable directory"
        ) from None
    if overwrite:
        for name in (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, "model.safetensors", "arch.json"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return out


def append_metrics(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Append one epoch's record to `metrics.jsonl` as one line, flushed and fsynced."""
    append_line_synced(Path(run_dir) / METRICS_FILE, json.dumps(record))


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from `path`, or an AdpruneError naming the file."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdpruneError(f"{path} not found: is this a run directory written by 'adprune train'?") from None
    except OSError as exc:
        raise AdpruneError(
            f"cannot read {path} ({exc.strerror or exc}): check that it is a readable file"
        ) from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a 5000-digit number, deep nesting
        raise AdpruneError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise AdpruneError(f"{path} must hold a JSON object")
    return obj


def keep_metrics_until(run_dir: str | Path, epoch: int) -> None:
    """Rewrite `metrics.jsonl` atomically with only the complete records of epochs 1..`epoch`.

    Used when a run resumes from the checkpoint of `epoch`: the epochs after it run again.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epoch:
            kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode("utf-8"))
