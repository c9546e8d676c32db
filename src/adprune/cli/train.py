"""`adprune train`: its flags are generated from `TrainConfig`, where every option is declared once."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from ..train.config import TrainConfig, flag_of


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated epoch numbers like 3,6, got {text!r}"
        ) from None


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _json_file(path: str) -> dict[str, Any]:
    from ..runs.rundir import read_json

    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a file: give a JSON file")
    try:
        return read_json(Path(path))
    except AdpruneError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_PARSERS = {"epochs": _int_list, "names": _name_list, "json": _json_file}


def _scalar_type(hint: Any) -> type:
    """`int`, `float` or `str` from an annotation such as `int | None`."""
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0]


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _add_option(parser: argparse.ArgumentParser, field: dataclasses.Field, hint: Any) -> None:
    """One flag for one `TrainConfig` field, from its declaration."""
    spec, default = field.metadata["option"], _default_of(field)
    kwargs: dict[str, Any] = {"dest": field.name, "default": default, "help": spec.help}
    if hint is bool:
        kwargs["action"] = "store_false" if default else "store_true"
    else:
        kwargs["type"] = _PARSERS[spec.parser] if spec.parser else _scalar_type(hint)
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
        if default is not None and default != []:
            kwargs["help"] += " (default: %(default)s)"
    parser.add_argument(flag_of(field), **kwargs)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand, one flag per `TrainConfig` field plus `--resume`."""
    p = subparsers.add_parser(
        "train",
        help="train a network, pruning it by activation density",
        description=(
            "Train a network and prune it while it trains, guided by activation density. Epochs are "
            "numbered from 1; a prune happens at the end of an epoch. Writes config.json, metrics.jsonl, "
            "summary.json, model.safetensors and arch.json to --out."
        ),
    )
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        _add_option(p, field, hints[field.name])
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest good checkpoint, with the options it was "
        "started with (other options are ignored)",
    )
    p.set_defaults(run=run_train)


def _resumed_config(run_dir: str, progress: bool) -> TrainConfig:
    from ..runs.rundir import CONFIG_FILE, read_json
    from ..train.config_file import validate_config

    path = Path(run_dir) / CONFIG_FILE
    config = TrainConfig(**validate_config(read_json(path), path))
    config.out, config.progress = run_dir, progress
    return config


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume) the run the flags describe and print its outcome; return 0."""
    from ..train.config_file import validate_config

    if args.resume:
        config = _resumed_config(args.resume, args.progress)
    elif not args.out:
        raise AdpruneError("--out is required: name the run directory to create (or --resume RUN_DIR)")
    else:
        names = [field.name for field in dataclasses.fields(TrainConfig)]
        options = {name: getattr(args, name) for name in names}
        config = TrainConfig(**validate_config(options, "the command line"))
    config.validate()  # every option, before torch is imported
    from ..train.loop import train

    summary = train(config, resume=bool(args.resume))
    print(
        f"done: test accuracy {100 * summary['test_acc']:.2f}%, params {summary['params']:,} "
        f"(from {summary['params_initial']:,}), run directory {config.out}"
    )
    return 0
