"""Crash-safe writes: every file a run leaves is written here, so a crash leaves the old version or the
new one, never a mix."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_directory(path: str | Path) -> None:
    """Flush `path`'s directory entries to disk, so that a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a mix.

    The bytes go to a temporary file in the same directory, are fsynced, then renamed over `path`;
    the directory is fsynced too, so the rename survives a power cut. On failure the temporary file
    is removed and `path` is untouched.
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
    fsync_directory(path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """`atomic_write_bytes` of `obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Build a directory that appears at `final` complete or not at all.

    Yields a temporary directory beside `final` (named `.NAME.*`) to fill; when the block ends
    without error it is fsynced and renamed to `final` (replacing a directory already there, such as
    a damaged checkpoint being rewritten). On any error the temporary directory is removed and
    `final` is untouched.
    """
    final = Path(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        fsync_directory(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_directory(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_line_synced(path: str | Path, line: str) -> None:
    """Append `line` and a newline to `path`, flushed and fsynced before returning."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
