"""`adprune train --start-from RUN`: a run begun from another run's final model, charged for it."""

import json
import shutil
from pathlib import Path

import pytest

from adprune.cli import main

TRAIN = [
    "train", "--model", "vgg11", "--width", "0.125", "--subset", "256", "--batch-size", "64",
    "--no-progress", "--no-report", "--device", "cpu",
]  # fmt: skip


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("start") / "dense"
    assert main([*TRAIN, "--epochs", "2", "--prune", "none", "--out", str(run)]) == 0
    return run


def test_a_run_resumed_after_a_crash_keeps_the_cost_it_started_with(dense, tmp_path):
    widths = tmp_path / "widths.json"
    widths.write_text(json.dumps({"features.0": 4, "features.4": 8}))
    args = [*TRAIN, "--epochs", "3", "--prune", "none", "--start-from", str(dense), "--importance", "l1",
            "--initial-widths", str(widths), "--lr", "0.005"]  # fmt: skip
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert main([*args, "--out", str(whole)]) == 0
    assert main([*args, "--out", str(crashed)]) == 0
    # as if killed while training epoch 3: its checkpoint, metrics line and final files never written
    shutil.rmtree(crashed / "checkpoints" / "epoch-0003")
    lines = (crashed / "metrics.jsonl").read_text().splitlines()
    (crashed / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    (crashed / "summary.json").unlink()
    assert main(["train", "--resume", str(crashed)]) == 0
    before, after = _summary(whole), _summary(crashed)
    assert after["train_flops_total"] == before["train_flops_total"]
    assert after["started_from"] == before["started_from"]
    assert after["started_from"]["train_flops_total"] == _summary(dense)["train_flops_total"]
    assert after["widths"]["features.0"] == 4 and after["test_acc"] == before["test_acc"]


def test_a_run_of_another_model_is_refused_before_anything_is_written(dense, tmp_path, capsys):
    out = tmp_path / "other"
    code = main([*TRAIN, "--width", "0.25", "--epochs", "1", "--start-from", str(dense), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].endswith(
        f"--start-from {dense}: its width is 0.125, this run's is 0.25; start from a run of the same model "
        "and dataset"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "summary", [{"test_acc": 0.5}, {"train_flops_total": 10, "wall_s": {"train": "1 min"}}]
)
def test_a_damaged_summary_is_refused_in_one_line(dense, tmp_path, capsys, summary):
    copy = tmp_path / "copy"
    shutil.copytree(dense, copy)
    (copy / "summary.json").write_text(json.dumps(summary))
    code = main([*TRAIN, "--epochs", "1", "--start-from", str(copy), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no training cost" in err[0], err
    assert Path(copy / "summary.json").exists()
