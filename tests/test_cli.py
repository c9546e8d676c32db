"""The command line end to end on real Fashion-MNIST, and its answers to bad input."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import adprune
from adprune.train.config import TrainConfig, flag_of
from adprune.train.data import BatchLoader, load_dataset
from adprune.train.loop import evaluate

FIELDS = {
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "density", "widths", "params", "macs",
    "train_flops", "train_flops_total", "wall_s", "energy_j", "pruned",
}  # fmt: skip


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run(
        [sys.executable, "-m", "adprune", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def _train(out: Path, *extra: str) -> Path:
    result = run_cli(
        "train", "--model", "vgg11", "--width", "0.125", "--subset", "1024", "--epochs", "3",
        "--batch-size", "128", "--lr", "0.05", "--out", str(out), "--no-progress", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("runs") / "adp", "--prune-at", "1")


def test_train_writes_a_complete_run_directory(pruned_run):
    names = {p.name for p in pruned_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "summary.json", "model.safetensors", "arch.json"} <= names
    records = [json.loads(line) for line in (pruned_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(set(r) >= FIELDS for r in records)
    # decided after epoch 1, its channels fade out during epoch 2 and are cut at its end
    assert [(r["prune_decided"], r["pruned"]) for r in records] == [
        (True, False),
        (False, True),
        (False, False),
    ]
    assert records[1]["params"] == records[0]["params"] == records[0]["params_after"]
    assert records[2]["params"] < records[1]["params"] and records[2]["macs"] < records[1]["macs"]
    # BatchNorm is re-estimated inside the fade epoch's own training batches: no extra forwards
    assert records[2]["train_flops_total"] == sum(r["train_flops"] for r in records)
    assert records[2]["widths"] == records[1]["widths_after"] != records[1]["widths"] == records[0]["widths"]
    config = json.loads((pruned_run / "config.json").read_text())
    assert config["prune_at"] == [1] and config["subset"] == 1024


def test_load_reproduces_the_reported_accuracy(pruned_run):
    summary = json.loads((pruned_run / "summary.json").read_text())
    model = adprune.load(pruned_run)
    assert sum(p.numel() for p in model.parameters()) == summary["params"]
    arch = json.loads((pruned_run / "arch.json").read_text())
    splits = load_dataset("fashion-mnist", subset=16)
    assert (list(splits.mean), list(splits.std)) == (arch["mean"], arch["std"])
    loader = BatchLoader(
        splits.test_images, splits.test_labels, batch_size=1000, mean=arch["mean"], std=arch["std"]
    )
    _, accuracy = evaluate(model, loader, torch.device("cpu"))
    assert accuracy == summary["test_acc"]


def test_compare_prints_each_cost_as_a_ratio_to_the_first_run(pruned_run, tmp_path):
    dense = _train(tmp_path / "dense", "--prune", "none", "--no-report")
    result = run_cli("compare", str(dense), str(pruned_run))
    assert result.returncode == 0, result.stderr
    base, pruned = (json.loads((run / "summary.json").read_text()) for run in (dense, pruned_run))
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("adp "))
    assert row[1] == f"{100 * pruned['test_acc']:.2f}%"
    assert row[2] == f"{100 * (pruned['test_acc'] - base['test_acc']):+.2f}"
    assert row[4] == f"{base['params'] / pruned['params']:.2f}" and float(row[4]) > 2
    assert row[6] == f"{base['macs'] / pruned['macs']:.2f}"
    assert row[8] == f"{base['train_flops_total'] / pruned['train_flops_total']:.2f}"


def _assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adprune: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "vgg99", "--data-dir", "{tmp}/nothing"], ["vgg99", "tv:"]),
        (["--ignore", "features.99", "--data-dir", "{tmp}/nothing"], ["--ignore features.99", "no module"]),
        (["--model", "tv:resnet18", "--width", "0.5", "--data-dir", "{tmp}/nothing"], ["width=0.5"]),
        (["--dataset", "imagenet77"], ["imagenet77", "fashion-mnist"]),
        (["--dataset", "cifar10", "--data-dir", "{tmp}/nothing"], ["not found", "--download"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--epochs", "3", "--prune-at", "3"], ["--prune-at 3", "1..2"]),
        (["--epochs", "3", "--prune-at", "x"], ["--prune-at"]),
        (["--optimizer", "lbfgs"], ["--optimizer"]),
        (["--device", "cuda:7"], ["--device"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragments):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_cli("train", "--subset", "64", "--epochs", "2", *args, "--out", str(tmp_path / "run"))
    _assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def _train_without_data(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`adprune train` on MNIST from an empty --data-dir (MNIST has no system copy to fall back on)."""
    none = str(tmp_path / "none")
    return run_cli(
        "train", "--dataset", "mnist", "--subset", "64", "--data-dir", none, "--out", str(out), *extra
    )


def test_existing_run_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    # refused before the dataset is read: no MNIST anywhere (it has no system copy), the answer is about --out
    result = _train_without_data(tmp_path, out, "--epochs", "1")
    _assert_one_line_error(result, "--overwrite")
    assert (out / "metrics.jsonl").read_text() == "precious\n"
    assert [p.name for p in out.iterdir()] == ["metrics.jsonl"]


def test_missing_data_leaves_no_run_directory_behind(tmp_path):
    result = _train_without_data(tmp_path, tmp_path / "run")
    _assert_one_line_error(result, "mnist not found")
    assert not (tmp_path / "run").exists()  # so the same command works once the data is there


def test_unwritable_out_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # root writes through permission bits; sysfs refuses everyone
    parent = Path("/sys/kernel") if os.geteuid() == 0 else locked
    _assert_one_line_error(
        run_cli("train", "--subset", "64", "--out", str(parent / "adprune-run")), "writable"
    )


def test_out_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("train", "--subset", "64", "--epochs", "1", "--out", str(blocker / "run"))
    _assert_one_line_error(result, f"cannot write to --out {blocker / 'run'} (Not a directory)")
    assert blocker.read_text() == "x"


def test_help_documents_every_option():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    squeezed = "".join(result.stdout.split())  # argparse wraps lines, also at hyphens
    for field in dataclasses.fields(TrainConfig):
        assert flag_of(field) in squeezed, field.name
        assert "".join(field.metadata["option"].help.split())[:40] in squeezed, field.name


def test_version_is_the_package_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"adprune {adprune.__version__}\n"
