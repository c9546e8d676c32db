"""`adprune export`: write a run's pruned model as ONNX or TorchScript."""

from __future__ import annotations

import argparse

from ..runs.formats import FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand to `subparsers`; its handler is `args.run(args)`."""
    p = subparsers.add_parser(
        "export",
        help="write a run's pruned model as ONNX or TorchScript",
        description=(
            "Rebuild the pruned model of a finished run and write it as one file for inference: ONNX "
            "(input 'input' [batch, C, S, S], output 'logits' [batch, classes], dynamic batch; needs "
            "pip install 'adprune[export]') or TorchScript (torch.jit.load). Inputs are expected "
            "normalised with the mean and std in RUN_DIR/arch.json. The file is written atomically: "
            "on failure an existing --out is left unchanged."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'adprune train'")
    p.add_argument("--format", dest="fmt", choices=FORMATS, required=True, help="onnx or torchscript")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write, e.g. model.onnx")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export the model and print the path written; return 0."""
    from ..runs.export import export_model

    print(f"exported: {export_model(args.run_dir, args.fmt, args.out)}")
    return 0
