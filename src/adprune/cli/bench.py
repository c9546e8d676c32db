"""`adprune bench`: run a bench configuration and print its table."""

from __future__ import annotations

import argparse
import dataclasses

from ..errors import AdpruneError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a whole number of seeds in 1..100, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand to `subparsers`; its handler is `args.run(args)`."""
    p = subparsers.add_parser(
        "bench",
        help="run ADP beside the dense baseline and the peer pruning methods",
        description=(
            "Train every method of a bench configuration (dense, adp-inherit, adp-reinit, adp-early-k, "
            "uniform, slimming, l1-filter, train-prune-finetune) on the same model, data, budget and seeds, "
            "one after another in this process, and write RESULTS_DIR/NAME.json, NAME.md and NAME.png: "
            "accuracy, parameters, MACs, training FLOPs, wall time, energy, each as a ratio to dense, and "
            "accuracy against each cost. A configuration's 'frontier' (prune counts) runs ADP once per "
            "count with every matched peer at each of its sizes. Finished runs are reused and "
            "interrupted ones resumed when the bench is run again."
        ),
    )
    p.add_argument("config", help="a bench configuration .json or a name in bench/configs/, e.g. fashion-cpu")
    p.add_argument("--seeds", type=_positive, help="number of seeds, 0..N-1 (default: the configuration's)")
    p.add_argument("--methods", help="comma-separated subset of the configuration's methods")
    p.add_argument("--runs-dir", help="where the runs go (default: runs/bench/NAME)")
    p.add_argument("--results-dir", default="bench/results", help="where NAME.json and NAME.md go")
    p.add_argument("--device", help="override the configuration's device (auto|cpu|cuda[:N])")
    p.add_argument("--data-dir", help="override the configuration's dataset folder")
    p.set_defaults(run=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    """Run the bench and print its Markdown table; return 0."""
    from ..bench.config import load_bench_config
    from ..bench.run import run_bench
    from ..bench.table import format_markdown

    config = load_bench_config(args.config)
    if args.seeds is not None:
        config = dataclasses.replace(config, seeds=args.seeds)
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in config.methods]
        if unknown or not methods:
            raise AdpruneError(
                f"--methods {args.methods!r}: choose among this configuration's methods: "
                f"{', '.join(config.methods)}"
            )
        config = dataclasses.replace(config, methods=methods)
    overrides = {k: v for k, v in (("device", args.device), ("data_dir", args.data_dir)) if v is not None}
    config = dataclasses.replace(config, train={**config.train, **overrides})
    result = run_bench(config, args.runs_dir or f"runs/bench/{config.name}", args.results_dir)
    print(format_markdown(result))
    print(f"results: {args.results_dir}/{config.name}.json and .md")
    return 0
