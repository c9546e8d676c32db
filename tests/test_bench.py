"""`adprune bench` end to end on tiny Fashion-MNIST runs: the table is the ledger's figures."""

import json
import re
from pathlib import Path

import pytest

from adprune.bench.config import BenchConfig, load_bench_config
from adprune.bench.methods import uniform_initial_widths
from adprune.bench.run import run_bench
from adprune.bench.table import ENERGY_ESTIMATE_NOTE, estimated_energy_j
from adprune.cli import main
from adprune.train.config import TrainConfig

TRAIN = {
    "model": "vgg11", "width": 0.125, "dataset": "fashion-mnist", "subset": 256, "epochs": 2,
    "batch_size": 64, "eval_batch_size": 1000, "prune_at": [1], "max_prunes": 1, "device": "cpu", "fade": 0.0,
}  # fmt: skip


def _last_record(run: str) -> dict:
    return json.loads((Path(run) / "metrics.jsonl").read_text().splitlines()[-1])


def _summary(run: str) -> dict:
    return json.loads((Path(run) / "summary.json").read_text())


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    config = BenchConfig(name="tiny", train=TRAIN, methods=["dense", "adp-inherit"], description="tiny")
    logs: list[str] = []
    result = run_bench(config, root / "runs", root / "results", log=logs.append)
    return root, config, result, logs


def test_every_figure_of_the_table_is_the_runs_ledger(two_methods):
    root, _, result, _ = two_methods
    dense, adp = result["rows"]
    assert [dense["method"], adp["method"]] == ["dense", "adp-inherit"]
    base, last = _last_record(dense["runs"][0]), _last_record(adp["runs"][0])
    for key in ("params", "macs", "train_flops_total"):
        assert dense[key] == base[key] and adp[key] == last[key]
        assert adp[f"{key}_x"] == base[key] / last[key]
    assert adp["params_x"] > 2  # the prune after epoch 1 happened
    assert adp["prune_epochs"] == [[1]] and dense["prune_epochs"] == [[]]
    assert adp["acc_delta_pts"] == 100 * (last["test_acc"] - base["test_acc"])
    wall = _summary(adp["runs"][0])["wall_s"]
    # training wall time: training, pruning and validation, no test evaluation
    assert adp["wall_s"] == pytest.approx(wall["train"] + wall["prune"] + wall["val"], rel=1e-12)
    assert adp["energy_est_j"] == estimated_energy_j(last["train_flops_total"])
    assert adp["energy_est_j"] == pytest.approx(last["train_flops_total"] / 2 * 4.6e-12, rel=1e-12)
    assert adp["energy_est_j_x"] == pytest.approx(adp["train_flops_total_x"], rel=1e-12)
    table = (root / "results" / "tiny.md").read_text()
    line = next(row for row in table.splitlines() if row.startswith("| adp-inherit |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == f"{adp['params_x']:.2f}" and cells[8] == f"{adp['train_flops_total_x']:.2f}"
    assert cells[2] == f"{adp['acc_delta_pts']:+.2f}" and cells[-3] == "1" and cells[-1] == "0"
    check = _summary(adp["runs"][0])["prune_checks"][0]
    assert cells[-2] == f"{100 * (check['train_acc_before'] - check['train_acc_after']):.1f}"
    assert adp["worst_prune_drop_pts"] == pytest.approx(
        100 * (check["train_acc_before"] - check["train_acc_after"])
    )
    assert ENERGY_ESTIMATE_NOTE in table
    assert json.loads((root / "results" / "tiny.json").read_text())["rows"] == result["rows"]


def test_a_second_bench_reuses_finished_runs(two_methods):
    root, config, result, _ = two_methods
    logs: list[str] = []
    again = run_bench(config, root / "runs", root / "results", log=logs.append)
    assert again["rows"] == result["rows"]
    assert sum("reusing the finished run" in line for line in logs) == 2
    assert not any(line.startswith("epoch") for line in logs)


def test_matched_methods_are_left_out_with_a_note_when_adp_did_not_prune(tmp_path):
    config = BenchConfig(name="none", train={**TRAIN, "prune_at": []}, methods=["uniform", "l1-filter"])
    result = run_bench(config, tmp_path / "runs", tmp_path / "results", log=lambda _: None)
    assert result["rows"] == []
    assert result["notes"] == [
        "no dense row: ratios are left out",
        "uniform, seed 0: not run, adp-inherit did not prune (no prune was due), so uniform has no size "
        "to match",
        "l1-filter, seed 0: not run, adp-inherit did not prune (no prune was due), so l1-filter has no size "
        "to match",
    ]
    assert "not run" in (tmp_path / "results" / "none.md").read_text()


def test_matched_methods_take_adp_inherits_count_widths_and_epoch(tmp_path):
    train = {**TRAIN, "epochs": 3, "prune_at": [2]}
    config = BenchConfig(name="matched", train=train, methods=["uniform", "slimming", "l1-filter"])
    result = run_bench(config, tmp_path / "runs", tmp_path / "results", log=lambda _: None)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["uniform", "slimming", "l1-filter"]  # adp-inherit ran, but was not asked for
    adp = _summary(str(tmp_path / "runs" / "adp-inherit" / "seed-0"))
    target = adp["params"]
    assert _summary(rows["l1-filter"]["runs"][0])["widths"] == adp["widths"]
    assert rows["l1-filter"]["prune_epochs"] == rows["slimming"]["prune_epochs"] == [[2]]
    slim = json.loads((Path(rows["slimming"]["runs"][0]) / "config.json").read_text())
    assert slim["importance"] == "bn_scale" and slim["target_params"] == target and slim["bn_l1"] == 1e-4
    uniform = json.loads((Path(rows["uniform"]["runs"][0]) / "config.json").read_text())
    dense_config = TrainConfig(**{**TRAIN, "epochs": 3, "prune_at": None, "out": str(tmp_path)})
    adp_run = tmp_path / "runs" / "adp-inherit" / "seed-0"
    assert uniform["initial_widths"] == uniform_initial_widths(dense_config, adp_run, target)
    for method in ("uniform", "slimming"):
        assert abs(rows[method]["params"] - target) / target < 0.05
    assert "no dense row" in result["notes"][0]


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({"name": "x", "train": TRAIN, "methods": ["dense", "magic"]}, "magic"),
        ({"name": "x", "train": TRAIN, "colour": 1}, "unknown keys ['colour']"),
        ({"name": "x", "train": TRAIN, "early_k": [2]}, "early_k must list epochs in 1..1"),
        ({"name": "x", "train": {**TRAIN, "epochs": 0}}, "--epochs must be"),
        ({"name": "x", "train": {**TRAIN, "optimiser": "sgd"}}, "unknown training options ['optimiser']"),
        ({"name": "../x", "train": TRAIN}, "plain file name"),
        ({"name": "x", "train": TRAIN, "seeds": 0}, "seeds must be"),
        ({"name": "x", "train": TRAIN, "seeds": True}, "seeds must be"),
        ({"name": "x", "train": TRAIN, "description": 3}, "description must be a string"),
        ({"train": TRAIN}, "needs 'name'"),
    ],
)
def test_a_bad_bench_configuration_is_one_line_and_exit_2(tmp_path, capsys, obj, fragment):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    assert main(["bench", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adprune: error: ") and fragment in err[0], err
    assert not (tmp_path / "runs").exists()


def test_the_shipped_configurations_are_valid():
    configs = sorted(Path(__file__).parents[1].glob("bench/configs/*.json"))
    reference = {
        "fashion-cpu", "fashion-short", "cifar10-vgg19", "cifar10-resnet18", "cifar100-vgg19",
        "tinyimagenet-resnet18",
    }  # fmt: skip
    every_method = {"dense", "adp-inherit", "adp-reinit", "uniform", "slimming", "l1-filter"}
    assert {p.stem for p in configs} >= reference
    for path in configs:
        config = load_bench_config(path)
        assert config.name == path.stem and re.fullmatch(r"[a-z0-9-]+", config.name)
        if config.name in reference:
            assert set(config.methods) >= every_method
        else:  # a variant answers one question: ADP against a peer inside the same bench run
            assert "adp-inherit" in config.methods and set(config.methods) - {"adp-inherit", "adp-reinit"}


@pytest.fixture(scope="module")
def frontier(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontier")
    train = {**TRAIN, "epochs": 4, "prune_at": [1, 2], "max_prunes": 1}  # each level sets its own count
    config = BenchConfig(
        name="front", train=train, frontier=[1, 2], finetune_epochs=1,
        methods=["dense", "adp-inherit", "uniform", "l1-filter", "train-prune-finetune"],
    )  # fmt: skip
    result = run_bench(config, root / "runs", root / "results", log=lambda _: None)
    return root, result


def test_a_frontier_runs_adp_at_each_prune_count_with_every_peer_at_its_size(frontier):
    root, result = frontier
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == [
        "dense", "adp-inherit-p1", "adp-inherit-p2", "uniform-p1", "uniform-p2", "l1-filter-p1",
        "l1-filter-p2", "train-prune-finetune-p1", "train-prune-finetune-p2",
    ]  # fmt: skip
    assert rows["adp-inherit-p1"]["prune_epochs"] == [[1]] and rows["adp-inherit-p2"]["prune_epochs"] == [
        [1, 2]
    ]
    assert rows["adp-inherit-p2"]["params"] < rows["adp-inherit-p1"]["params"]
    for level in (1, 2):
        adp = _summary(rows[f"adp-inherit-p{level}"]["runs"][0])
        assert _summary(rows[f"l1-filter-p{level}"]["runs"][0])["widths"] == adp["widths"]
        assert _summary(rows[f"train-prune-finetune-p{level}"]["runs"][0])["widths"] == adp["widths"]
        assert (
            rows[f"uniform-p{level}"]["family"] == "uniform" and rows[f"uniform-p{level}"]["level"] == level
        )
    assert (root / "results" / "front.png").read_bytes().startswith(b"\x89PNG")
    table = (root / "results" / "front.md").read_text()
    assert "![Test accuracy against parameters, inference MACs and training FLOPs](front.png)" in table
    frontier_line = next(line for line in table.splitlines() if line.startswith("| 2 |"))
    assert f"{100 * rows['l1-filter-p2']['test_acc']:.2f}" in frontier_line


def test_the_frontier_names_each_methods_largest_compression_within_1_and_3_points(frontier):
    _, result = frontier
    for family in ("adp-inherit", "uniform", "l1-filter", "train-prune-finetune"):
        members = [r for r in result["rows"] if r["family"] == family]
        for points in (1, 3):
            within = [r for r in members if r["acc_delta_pts"] >= -points]
            best = max(within, key=lambda r: r["params_x"]) if within else None
            got = result["reach"][family][str(points)]
            assert (got and got["row"]) == (best and best["method"])


def test_train_prune_finetune_starts_from_the_dense_run_and_is_charged_for_it(frontier):
    _, result = frontier
    rows = {r["method"]: r for r in result["rows"]}
    dense_run, tpf_run = rows["dense"]["runs"][0], rows["train-prune-finetune-p2"]["runs"][0]
    dense, tpf = _summary(dense_run), _summary(tpf_run)
    config = json.loads((Path(tpf_run) / "config.json").read_text())
    assert config["start_from"] == dense_run and config["importance"] == "l1" and config["epochs"] == 1
    assert config["lr"] == TRAIN.get("lr", 0.05) / 10
    own = sum(
        json.loads(line)["train_flops"] for line in (Path(tpf_run) / "metrics.jsonl").read_text().splitlines()
    )
    assert tpf["train_flops_total"] == dense["train_flops_total"] + own
    for key in ("train", "eval"):
        assert tpf["wall_s"][key] > dense["wall_s"][key]
    assert tpf["started_from"]["run"] == dense_run
    assert tpf["started_from"]["train_flops_total"] == dense["train_flops_total"]
    assert rows["train-prune-finetune-p2"]["train_flops_total_x"] < 1  # the pipeline costs more than dense


def test_the_report_of_a_run_started_from_another_says_so(frontier, tmp_path):
    from adprune.report.html import write_report

    _, result = frontier
    rows = {r["method"]: r for r in result["rows"]}
    dense_run, tpf_run = rows["dense"]["runs"][0], rows["train-prune-finetune-p1"]["runs"][0]
    page = write_report([tpf_run], tmp_path / "report")
    text = page.read_text() if page.is_file() else (page / "report.html").read_text()
    flops = _summary(dense_run)["train_flops_total"]
    assert (
        f"{dense_run} (trained 4 epochs, test accuracy" in text
        and f"include its {flops:,} training FLOPs" in text
    )


def test_a_method_level_with_dense_counts_as_within_every_loss():
    from adprune.bench.frontier import reach

    rows = [
        {"method": "dense", "family": "dense", "acc_delta_pts": 0.0, "params_x": 1.0, "macs_x": 1.0},
        {"method": "a-p1", "family": "a", "acc_delta_pts": 0.0, "params_x": 4.0, "macs_x": 3.0},
        {"method": "a-p2", "family": "a", "acc_delta_pts": -2.5, "params_x": 16.0, "macs_x": 9.0},
        {"method": "b", "family": "b", "acc_delta_pts": None, "params_x": 99.0, "macs_x": 9.0},
    ]
    found = reach(rows)
    assert found["a"]["1"] == {"row": "a-p1", "params_x": 4.0, "macs_x": 3.0, "acc_delta_pts": 0.0}
    assert found["a"]["3"]["row"] == "a-p2"
    assert found["b"] == {"1": None, "3": None} and "dense" not in found
