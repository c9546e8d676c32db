"""Evaluation on a budget: the test set every N epochs and on a subset in between, the final epoch
always on the whole test set; reports and comparisons cope with the epochs that did not measure it."""

import json

from fake_data import FAKE_TEST_IMAGES

from adprune.report.html import write_report
from adprune.train.config import TrainConfig
from adprune.train.loop import train


def test_eval_every_and_subset_measure_only_where_asked_and_the_last_epoch_in_full(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(
        out=str(out), model="vgg11", width=0.125, subset=256, epochs=5, batch_size=64, prune="none",
        eval_every=2, eval_subset=300, progress=False, report=False,
    )  # fmt: skip
    summary = train(config, log=lambda _: None)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_samples"] for r in lines] == [0, 300, 0, 300, FAKE_TEST_IMAGES]
    assert [r["test_acc"] is None for r in lines] == [True, False, True, False, False]
    assert summary["test_acc"] == lines[-1]["test_acc"]
    report = write_report([out], tmp_path / "report")  # gaps in the curves, not errors
    assert "Prunes" not in report.read_text() and (tmp_path / "report" / "curves.png").stat().st_size > 0
