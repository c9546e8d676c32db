"""Decisions around a prune in `adprune train`: a prune the accuracy guard rejects is rolled back (training
returns to the checkpoint before it, trains on without pruning, keeps one metrics line per epoch and
still counts what it spent), and the learning rate re-warms after a cut."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from adprune.train.config import TrainConfig
from adprune.train.guard import PruneGuard
from adprune.train.loop import train


def _config(out: Path, max_drop: float) -> TrainConfig:
    return TrainConfig(
        out=str(out), model="vgg11", width=0.125, subset=256, val_split=128, epochs=4, batch_size=64,
        lr=0.02, prune_at=[1, 2], fade=0.0, max_drop=max_drop, guard_epochs=1, progress=False, report=False,
    )  # fmt: skip


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_rejected_prune_is_rolled_back_and_pruning_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(PruneGuard, "_too_costly", lambda self, watch: watch.decided == 1)
    summary = train(_config(tmp_path / "run", max_drop=0.0), log=lambda _: None)
    lines = _lines(tmp_path / "run")
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    dense = lines[0]["params"]
    assert all(r["params"] == r["params_after"] == dense and not r["pruned"] for r in lines)
    assert summary["prunes"] == [] and summary["params"] == dense
    (rollback,) = summary["rollbacks"]
    assert (rollback["from_epoch"], rollback["to_epoch"]) == (2, 0)
    assert rollback["check"]["decided"] == 1 and rollback["check"]["rolled_back"]
    assert [c["decided"] for c in summary["prune_checks"]] == [1]
    # the two discarded epochs (one dense, one pruned) still count: more than one dense epoch, less than two
    dense_epoch = lines[0]["train_flops"]
    assert dense_epoch < rollback["train_flops_discarded"] < 2 * dense_epoch
    assert (
        summary["train_flops_total"]
        == sum(r["train_flops"] for r in lines) + rollback["train_flops_discarded"]
    )
    assert lines[0]["train_flops_total"] == dense_epoch + rollback["train_flops_discarded"]
    assert all(r["val_acc"] is None for r in lines)  # nothing reads validation once pruning stopped
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "epoch-0003",
        "epoch-0004",
    ]


def test_an_accepted_prune_keeps_its_checks_and_validation_readings(tmp_path):
    summary = train(_config(tmp_path / "run", max_drop=100.0), log=lambda _: None)
    lines = _lines(tmp_path / "run")
    assert [e["epoch"] for e in summary["prunes"]] == [1, 2] and summary["rollbacks"] == []
    checks = summary["prune_checks"]
    assert [(c["decided"], c["cut"]) for c in checks] == [(1, 1), (2, 2)]
    assert checks[0]["train_acc_before"] == lines[0]["train_acc"]
    assert checks[0]["train_acc_after"] == lines[1]["train_acc"]
    assert (
        checks[0]["val_acc_before"] == lines[0]["val_acc"]
        and checks[0]["val_acc_after"] == lines[1]["val_acc"]
    )
    assert [len(r["prune_checks"]) for r in lines] == [0, 1, 1, 0]
    assert lines[3]["val_acc"] is None  # pruning finished (max_prunes reached) and no prune is watched
    assert "validation images held out" in summary["decisions_read"]


def test_rewarm_ramps_the_learning_rate_in_the_epoch_after_a_cut_only(tmp_path, monkeypatch):
    rates, step = [], torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    config = dataclasses.replace(
        _config(tmp_path / "run", max_drop=None), val_split=0, prune_at=[1], rewarm=0.5
    )
    train(config, log=lambda _: None)
    scheduled = [
        json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    epoch1, epoch2, epoch3 = rates[0:4], rates[4:8], rates[8:12]  # 256 images in batches of 64
    assert epoch1 == [0.02] * 4 and epoch3 == [scheduled[1]] * 4
    assert epoch2 == pytest.approx([scheduled[0] / 3, 2 * scheduled[0] / 3, scheduled[0], scheduled[0]])


def test_the_defaults_size_the_run_to_its_budget_and_judge_the_prune_on_two_epochs_against_the_curve(
    tmp_path,
):
    config = TrainConfig(
        out=str(tmp_path / "run"), model="vgg11", width=0.125, subset=1000, epochs=7, batch_size=100,
        lr=0.02, progress=False, report=False,
    )  # fmt: skip
    summary = train(config, log=lambda _: None)
    lines = _lines(tmp_path / "run")
    assert summary["decisions_read"].endswith(
        "the accuracy guard (budget 1.0 points): 100 validation images held out of training"
    )
    # 7 epochs: the final network must train 5 (70%), so the one prune is sized after epoch 1, cut after 2
    assert lines[0]["prune_decided"] and lines[1]["pruned"]
    (check,) = summary["prune_checks"]
    assert (check["decided"], check["cut"], check["val_epochs"]) == (1, 2, [3, 4])
    assert check["val_acc_expected"] == lines[0]["val_acc"]  # one epoch before the cut: a flat curve
    assert check["val_acc_after"] == pytest.approx((lines[2]["val_acc"] + lines[3]["val_acc"]) / 2)
    cost = 100 * (check["val_acc_expected"] - check["val_acc_after"])  # seeded: the same on every run
    assert cost <= 1.0 and not check["rolled_back"] and summary["rollbacks"] == []
    assert [e["epoch"] for e in summary["prunes"]] == [2] and summary["params"] < lines[0]["params"]
    assert lines[4]["val_acc"] is None  # pruning ended and the guard's two epochs are over
