"""`adprune export`: a pruned run's model as ONNX and TorchScript gives PyTorch's outputs."""

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch

import adprune
from adprune.cli.export import add_parser
from adprune.errors import AdpruneError
from adprune.models import build_model
from adprune.runs import atomic
from adprune.runs import model_files as checkpoint
from adprune.runs.export import export_model

MODELS = ["vgg11", "resnet18"]


def _pruned_run(out: Path, name: str) -> Path:
    """A run directory holding a pruned `name` (every group cut to a random width), BN statistics set."""
    model = build_model(name, in_channels=1, num_classes=10, image_size=28, width=0.125)
    pruner = adprune.ADPruner(model, torch.zeros(2, 1, 28, 28), check=False)
    pruner.prune(1, {group: torch.rand(width) for group, width in pruner.widths.items()})
    assert pruner.events, "the run must hold a pruned model"
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    arch = {"model": name, "in_channels": 1, "num_classes": 10, "image_size": 28, "width": 0.125}
    checkpoint.save_model(out, model, {**arch, "mean": [0.28], "std": [0.35]}, pruner.widths)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    return {name: _pruned_run(tmp_path_factory.mktemp(name), name) for name in MODELS}


@pytest.fixture
def run_dir(runs) -> Path:
    return runs["vgg11"]


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _expected(run: Path, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return adprune.load(run)(inputs)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_matches_pytorch_with_a_dynamic_batch(runs, name, inputs, tmp_path):
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    out = export_model(runs[name], "onnx", tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (given,), (produced,) = session.get_inputs(), session.get_outputs()
    assert (given.name, produced.name) == ("input", "logits")
    assert isinstance(given.shape[0], str) and given.shape[1:] == [1, 28, 28]
    (logits,) = session.run(None, {"input": inputs.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), _expected(runs[name], inputs), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_matches_pytorch(runs, name, inputs, tmp_path):
    out = export_model(runs[name], "torchscript", tmp_path / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(out))
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), _expected(runs[name], inputs), atol=1e-5, rtol=0)


def test_subcommand_writes_the_file_and_prints_its_path(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="adprune")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "model.pt"
    args = parser.parse_args(["export", str(run_dir), "--format", "torchscript", "--out", str(out)])
    assert args.run(args) == 0
    assert capsys.readouterr().out == f"exported: {out}\n"
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("fmt", "where", "message"),
    [
        ("tflite", lambda run, tmp: (run, tmp / "m"), "unknown export format"),
        ("onnx", lambda run, tmp: (tmp / "missing", tmp / "m.onnx"), "arch.json not found"),
        ("onnx", lambda run, tmp: (run, tmp), "is a directory"),
        ("onnx", lambda run, tmp: (run, tmp / "no" / "m.onnx"), "does not exist"),
        ("torchscript", lambda run, tmp: (run, run / "arch.json" / "m.pt"), "does not exist"),
    ],
    ids=["bad-format", "missing-run-dir", "out-is-a-directory", "missing-parent", "parent-is-a-file"],
)
def test_bad_requests_are_one_line_errors(run_dir, tmp_path, fmt, where, message):
    source, out = where(run_dir, tmp_path)
    with pytest.raises(AdpruneError, match=message) as caught:
        export_model(source, fmt, out)
    assert "\n" not in str(caught.value)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "model.pt"
    out.write_text("the previous export")

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(AdpruneError, match="No space left on device"):
        export_model(run_dir, "torchscript", out)
    assert out.read_text() == "the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_an_unreadable_run_is_refused_before_anything_is_written(run_dir, tmp_path):
    broken = tmp_path / "run"
    broken.mkdir()
    arch = json.loads((run_dir / "arch.json").read_text())
    (broken / "arch.json").write_text(json.dumps({**arch, "width": 1e9}))
    with pytest.raises(AdpruneError, match=r"arch.json: 'width' must be a number"):
        export_model(broken, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
