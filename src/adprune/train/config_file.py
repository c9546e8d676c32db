"""Checking options read from JSON (a run's `config.json`, a bench file) against `TrainConfig`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from .config import TrainConfig


def _conform(value: object, kind: Any) -> tuple[bool, object]:
    """Whether `value` (from JSON) is of the annotated type `kind`, and the value as that type.

    Handles the annotations `TrainConfig` uses: bool, int (not bool), float (finite; an int is
    converted), str (no NUL character, which no path or name can hold), list[X], dict[str, X] and
    X | None.
    """
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            ok, converted = (value is None, None) if option is type(None) else _conform(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            return False, value
        converted = [_conform(v, item) for v in value]
        return all(ok for ok, _ in converted), [v for _, v in converted]
    if origin is dict:
        key_kind, item = typing.get_args(kind)
        if not isinstance(value, dict):
            return False, value
        converted = {k: _conform(v, item) for k, v in value.items()}
        keys_ok = all(_conform(k, key_kind)[0] for k in value)
        return keys_ok and all(ok for ok, _ in converted.values()), {k: v for k, (_, v) in converted.items()}
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return number, float(value) if number else value
    if kind is str:
        return isinstance(value, str) and "\x00" not in value, value
    raise TypeError(f"TrainConfig uses an annotation config_check does not know: {kind!r}")


def _describe(kind: Any) -> str:
    return str(kind).replace("typing.", "").replace("<class '", "").replace("'>", "")


def validate_config(obj: object, path: str | Path) -> dict[str, Any]:
    """The options of a parsed `config.json` (`obj`), checked, as keyword arguments for `TrainConfig`.

    `obj` must be a JSON object with exactly the fields of `TrainConfig` (every one:
    `adprune train` writes them all), each of its annotated type (see `_conform`: no bools for
    numbers, finite floats, no NULs in strings), and the options must pass `TrainConfig.validate`.
    Raises AdpruneError naming `path` and the first offending key; returns a new dict.
    """
    if not isinstance(obj, dict):
        raise AdpruneError(
            f"{path} must hold a JSON object of training options; the run directory is damaged"
        )
    hints = typing.get_type_hints(TrainConfig)
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(obj) - set(names))
    missing = [name for name in names if name not in obj]
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise AdpruneError(f"{path}: {problem}; it was not written by this version of 'adprune train'")
    values = {}
    for name in names:
        ok, values[name] = _conform(obj[name], hints[name])
        if not ok:
            raise AdpruneError(
                f"{path}: '{name}' must be of type {_describe(hints[name])}, got {obj[name]!r:.80}"
            )
    try:
        TrainConfig(**values).validate()
    except AdpruneError as exc:
        raise AdpruneError(f"{path}: {exc}") from None
    return values
