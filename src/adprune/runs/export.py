"""Export a run's pruned model to ONNX or TorchScript for inference outside adprune."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import AdpruneError
from .atomic import atomic_write_bytes
from .formats import FORMATS
from .model_files import load, read_arch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _check_out(out: Path) -> None:
    """Refuse an `out` that cannot receive a file before the (slow) export starts."""
    if out.is_dir():
        raise AdpruneError(f"--out {out} is a directory: name the file to write, e.g. {out / 'model.onnx'}")
    if not out.parent.is_dir():
        raise AdpruneError(f"--out {out}: the directory {out.parent} does not exist; create it first")
    try:
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        raise AdpruneError(
            f"cannot write to {out.parent} ({exc.strerror or exc}): choose a writable --out"
        ) from None


def _onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model as one self-contained ONNX file, with a dynamic batch dimension."""
    try:
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        return program.model_proto.SerializeToString()
    except ImportError as exc:
        raise AdpruneError(
            f"ONNX export needs onnx and onnxscript ({exc}): pip install 'adprune[export]'"
        ) from None
    except torch.onnx.errors.OnnxExporterError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise AdpruneError(
            f"this model cannot be exported to ONNX ({reason}); try --format torchscript"
        ) from None


def _torchscript_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model traced on `example`, saved as a TorchScript archive."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        try:
            traced = torch.jit.trace(model, example)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise AdpruneError(
                f"this model cannot be traced to TorchScript ({reason}); try --format onnx"
            ) from None
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def export_model(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the pruned model of `run_dir` to `out` as `fmt` ("onnx" or "torchscript"); return `out`.

    The model is rebuilt with `adprune.load` (CPU, eval mode) and traced on one zero input of shape
    `(1, in_channels, image_size, image_size)` from `arch.json`. It expects inputs normalised with
    `arch.json`'s `mean` and `std`, as in training, and returns logits.

    - onnx: one self-contained file (opset of torch's exporter; needs the `export` extra), input
      `"input"` of shape `[batch, C, S, S]` and output `"logits"` of shape `[batch, num_classes]`,
      the batch dimension dynamic.
    - torchscript: a traced module for `torch.jit.load`, any batch size.

    `out` is written atomically: a failure leaves no partial file and an existing `out` unchanged.
    Raises AdpruneError for an unknown format, a damaged or missing run directory, an `out` that
    cannot be written, or a model the exporter cannot handle.
    """
    if fmt not in FORMATS:
        raise AdpruneError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    _check_out(out)
    arch = read_arch(run_dir)
    model = load(run_dir)
    example = torch.zeros(1, arch["in_channels"], arch["image_size"], arch["image_size"])
    with torch.no_grad():
        data = _onnx_bytes(model, example) if fmt == "onnx" else _torchscript_bytes(model, example)
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise AdpruneError(f"cannot write {out} ({exc.strerror or exc}): choose a writable --out") from None
    return out
