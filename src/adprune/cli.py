"""The `adprune` command line: train, compare, report, export, bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .bench_cli import add_parser as add_bench_parser
from .errors import AdpruneError
from .export_cli import add_parser as add_export_parser
from .report_cli import add_parser as add_report_parser


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit with 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise AdpruneError(f"{message} (see '{self.prog} --help')")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated epoch numbers like 3,6, got {text!r}"
        ) from None


def _json_file(path: str):
    from .rundir import read_json

    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a file: give a JSON file")
    try:
        return read_json(Path(path))
    except AdpruneError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _add_train(sub) -> None:
    from .trainer import TrainConfig

    d = TrainConfig(out="")
    p = sub.add_parser(
        "train",
        help="train a network, pruning it by activation density",
        description=(
            "Train a network and prune it while it trains, guided by activation density. Epochs are "
            "numbered from 1; a prune happens at the end of an epoch. Writes config.json, metrics.jsonl, "
            "summary.json, "
            "model.safetensors and arch.json to --out."
        ),
    )
    a = p.add_argument
    a(
        "--model",
        default=d.model,
        help="vgg11|vgg13|vgg16|vgg19|resnet18|resnet34, or tv:NAME for a torchvision "
        "classification model, e.g. tv:resnet50 (default: %(default)s)",
    )
    a(
        "--width",
        type=float,
        default=d.width,
        help="channel multiplier for our VGG/ResNet (default: %(default)s)",
    )
    a(
        "--dataset",
        default=d.dataset,
        help="fashion-mnist|mnist|cifar10|cifar100|tinyimagenet|imagefolder (default: %(default)s)",
    )
    a(
        "--data-dir",
        default=d.data_dir,
        help="folder holding the dataset (default: known places, then ~/.cache/adprune)",
    )
    a("--download", action="store_true", help="download the dataset with torchvision if it is missing")
    a("--image-size", type=int, default=d.image_size, help="image side for --dataset imagefolder")
    a("--subset", type=int, default=d.subset, help="train on the first N training samples only (quick runs)")
    a("--epochs", type=int, default=d.epochs, help="training budget in epochs (default: %(default)s)")
    a("--batch-size", type=int, default=d.batch_size, help="training batch size (default: %(default)s)")
    a(
        "--eval-batch-size",
        type=int,
        default=d.eval_batch_size,
        help="evaluation batch size (default: %(default)s)",
    )
    a(
        "--lr",
        type=float,
        default=d.lr,
        help="peak learning rate, cosine-annealed to 0 (default: %(default)s)",
    )
    a(
        "--optimizer",
        choices=("sgd", "adamw"),
        default=d.optimizer,
        help="sgd (Nesterov momentum) or adamw (default: %(default)s)",
    )
    a("--momentum", type=float, default=d.momentum, help="SGD momentum (default: %(default)s)")
    a(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help="weight decay on weights, not on biases or norm scales (default: %(default)s)",
    )
    a(
        "--label-smoothing",
        type=float,
        default=d.label_smoothing,
        help="cross-entropy label smoothing (default: %(default)s)",
    )
    a(
        "--prune",
        choices=("adp", "none"),
        default=d.prune,
        help="adp: activation-density pruning; none: dense "
        "baseline, densities still measured (default: %(default)s)",
    )
    a(
        "--prune-at",
        type=_int_list,
        default=None,
        help="comma-separated epochs after which to prune, e.g. 3,6; "
        "default: when the densities converge (--tol, --patience)",
    )
    a(
        "--tol",
        type=float,
        default=d.tol,
        help="densities converged when every layer moved less than this (default: %(default)s)",
    )
    a("--patience", type=int, default=d.patience, help="... over this many epochs (default: %(default)s)")
    a(
        "--min-channels",
        type=int,
        default=d.min_channels,
        help="no layer narrower than this (default: %(default)s)",
    )
    a(
        "--round-to",
        type=int,
        default=d.round_to,
        help="round widths up to a multiple of this, e.g. 8 (default: %(default)s)",
    )
    a("--max-prunes", type=int, default=d.max_prunes, help="at most this many prunes (default: %(default)s)")
    a(
        "--min-reduction",
        type=float,
        default=d.min_reduction,
        help="stop pruning after a prune that removed less "
        "than this share of the parameters (default: %(default)s)",
    )
    a(
        "--mode",
        choices=("inherit", "reinit"),
        default=d.mode,
        help="inherit: keep the densest channels and their "
        "weights; reinit: fresh weights at the new widths (default: %(default)s)",
    )
    a("--ignore", type=_name_list, default=[], help="comma-separated module names whose output width is kept")
    a(
        "--importance",
        choices=("density", "l1", "bn_scale"),
        default=d.importance,
        help="which channels a prune removes: the least dense (ADP), the smallest filter L1 norms, or the "
        "smallest BatchNorm scales (default: %(default)s)",
    )
    a(
        "--width-schedule",
        type=_json_file,
        metavar="FILE",
        help='JSON {"epoch": {"group": width}}: prune to these widths after these epochs instead of the plan',
    )
    a(
        "--target-params",
        type=int,
        help="prune to about this many parameters by one global ranking of channels by --importance",
    )
    a(
        "--initial-widths",
        type=_json_file,
        metavar="FILE",
        help='JSON {"group": width}: start from the network shrunk to these widths (first channels kept)',
    )
    a(
        "--bn-l1",
        type=float,
        default=d.bn_l1,
        help="L1 penalty on BatchNorm scales until the first prune (Network Slimming; e.g. 1e-4)",
    )
    a("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    a("--device", default=d.device, help="auto|cpu|cuda|cuda:N (default: %(default)s)")
    a("--out", help="run directory to create (required unless --resume)")
    a(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest good checkpoint, with "
        "the options it was started with (other options are ignored)",
    )
    a(
        "--tensorboard",
        action="store_true",
        help="also log to RUN_DIR/tensorboard (needs the tensorboard package)",
    )
    a("--overwrite", action="store_true", help="reuse a non-empty --out, replacing an earlier run's files")
    a("--no-progress", dest="progress", action="store_false", help="no progress bar")
    a("--no-report", dest="report", action="store_false", help="do not write report/report.html at the end")
    p.set_defaults(run=_run_train)


def _resumed_config(run_dir: str, progress: bool):
    from .config_check import validate_config
    from .rundir import CONFIG_FILE, read_json
    from .trainer import TrainConfig

    path = Path(run_dir) / CONFIG_FILE
    config = TrainConfig(**validate_config(read_json(path), path))
    config.out, config.progress = run_dir, progress
    return config


def _run_train(args: argparse.Namespace) -> int:
    from .trainer import TrainConfig, train

    if args.resume:
        config = _resumed_config(args.resume, args.progress)
    elif not args.out:
        raise AdpruneError("--out is required: name the run directory to create (or --resume RUN_DIR)")
    else:
        from .config_check import validate_config

        fields = TrainConfig.__dataclass_fields__
        options = {**TrainConfig(out="").__dict__, **{k: v for k, v in vars(args).items() if k in fields}}
        config = TrainConfig(**validate_config(options, "the command line"))
    summary = train(config, resume=bool(args.resume))
    print(
        f"done: test accuracy {100 * summary['test_acc']:.2f}%, params {summary['params']:,} "
        f"(from {summary['params_initial']:,}), run directory {config.out}"
    )
    return 0


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="print finished runs side by side",
        description=(
            "Print a table of finished runs: accuracy, parameters, MACs, training FLOPs, wall time, energy, "
            "each cost as a reduction factor against the first run."
        ),
    )
    p.add_argument("runs", nargs="+", help="run directories; the first is the reference")
    p.add_argument("--title", default="", help="a line printed above the table")
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from .compare import comparison_rows, format_table, load_summaries

    print(format_table(comparison_rows(load_summaries(args.runs)), args.title))
    return 0


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _one_line(text: str) -> str:
    """`text` with every character that would break the line (a path may hold one) shown escaped."""
    return "".join(repr(ch)[1:-1] if ch in _LINE_BREAKS else ch for ch in text)


def build_parser() -> argparse.ArgumentParser:
    """The full `adprune` argument parser."""
    parser = _OneLineParser(prog="adprune", description="Activation-density pruning in training.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    _add_train(sub)
    _add_compare(sub)
    add_report_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors print one line to stderr and return 2."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except AdpruneError as exc:
        print(f"adprune: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
