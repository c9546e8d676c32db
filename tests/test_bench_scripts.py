"""The benchmark scripts in bench/ end to end on tiny settings: their JSON is complete and self-consistent."""

import importlib.util
import json
import math
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import adprune
from adprune.models import build_model
from adprune.prune.cost import count_parameters, inference_macs
from adprune.prune.groups import find_groups
from adprune.prune.surgery import shrink_to_widths
from adprune.prune.tp_compat import build_graph
from adprune.train.config import TrainConfig
from adprune.train.loop import train

BENCH = Path(__file__).parents[1] / "bench"
RESULT_FIELDS = {"device", "cpu", "threads", "torch", "rows"}


def _script(name: str) -> ModuleType:
    """bench/NAME.py imported as a module (bench/ is not a package; its scripts import bench/_common.py)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _halved_params(name: str, width: float) -> int:
    """Parameters of `name` at `width` once every group keeps max(4, ceil(width / 2)) channels."""
    example = torch.zeros(2, 3, 32, 32)
    model = build_model(name, in_channels=3, num_classes=10, width=width)
    groups = find_groups(build_graph(model, example))
    shrink_to_widths(model, example, {g.name: max(4, math.ceil(g.width / 2)) for g in groups})
    return count_parameters(model)


def test_prune_latency_times_a_halving_prune_of_each_model(tmp_path):
    out = tmp_path / "prune_latency.json"
    _script("prune_latency").main(
        ["--models", "vgg11,resnet18", "--width", "0.125", "--repeats", "2", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    assert set(result) == RESULT_FIELDS and result["threads"] == torch.get_num_threads()
    assert [row["model"] for row in result["rows"]] == ["vgg11", "resnet18"]
    for row in result["rows"]:
        seconds = row["prune_s"]
        assert row["repeats"] == len(seconds) == 2
        assert row["median_prune_s"] == statistics.median(seconds)
        assert (row["min_prune_s"], row["max_prune_s"]) == (min(seconds), max(seconds))
        assert row["target_s"] == 1.0 and row["pass"] == (row["median_prune_s"] < 1.0)
        assert row["median_construct_s"] > 0 and row["median_construct_check_s"] > 0
        assert row["params_before"] == count_parameters(
            build_model(row["model"], in_channels=3, num_classes=10, width=0.125)
        )
        # densities averaging 0.5 halve every group (ceil, at least min_channels=4)
        assert row["params_after"] == _halved_params(row["model"], 0.125) < row["params_before"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    for name, prune, prune_at in (("dense", "none", None), ("adp", "adp", [1])):
        config = TrainConfig(
            out=str(root / name), model="vgg11", width=0.125, subset=128, epochs=2, batch_size=32,
            prune=prune, prune_at=prune_at, progress=False, report=False,
        )  # fmt: skip
        train(config, log=lambda _: None)
    return root / "dense", root / "adp"


def test_realised_speedup_reports_consistent_ratios(tiny_runs, tmp_path):
    dense_dir, pruned_dir = tiny_runs
    out = tmp_path / "speedup.json"
    _script("realised_speedup").main(
        ["--dense", str(dense_dir), "--pruned", str(pruned_dir), "--steps", "2", "--warmup", "1",
         "--batch-size", "8", "--device", "cpu", "--round-to", "1,8", "--out", str(out)]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert set(result) >= RESULT_FIELDS | {"dense_macs", "pruned_macs", "dense_params", "pruned_params"}
    assert (result["input_shape"], result["batch_size"], result["steps_each"]) == ([1, 32, 32], 8, 2)
    example = torch.zeros(1, 1, 32, 32)
    dense, pruned = adprune.load(dense_dir), adprune.load(pruned_dir)
    macs = inference_macs(dense, example), inference_macs(pruned, example)
    assert (result["dense_macs"], result["pruned_macs"]) == macs and macs[0] > macs[1]
    assert (result["dense_params"], result["pruned_params"]) == (
        json.loads((dense_dir / "summary.json").read_text())["params"],
        json.loads((pruned_dir / "summary.json").read_text())["params"],
    )
    arms = ["dense", "pruned", "fresh", "round-1", "round-8"]
    keys = [(r["layout"], r["mode"], r["arm"]) for r in result["rows"]]
    layouts, modes = ("contiguous", "channels-last"), ("train", "eval")
    assert keys == [(layout, mode, arm) for layout in layouts for mode in modes for arm in arms]
    rows = {key: row for key, row in zip(keys, result["rows"], strict=True)}
    for (layout, mode, arm), row in rows.items():
        dense_row = rows[(layout, mode, "dense")]
        assert row["speedup"] == dense_row["median_step_s"] / row["median_step_s"]
        assert row["mac_ratio"] == macs[0] / row["macs"]
        if arm != "dense":
            assert row["realised_share"] == row["speedup"] / row["mac_ratio"]
    pruned_row, fresh_row, exact_row = (
        rows[("contiguous", "train", a)] for a in ("pruned", "fresh", "round-1")
    )
    assert pruned_row["macs"] == fresh_row["macs"] == exact_row["macs"] == macs[1]  # the same widths
    round8 = rows[("contiguous", "train", "round-8")]
    assert round8["macs"] >= macs[1] and round8["params"] >= result["pruned_params"]


@pytest.mark.parametrize("missing", ["dense", "pruned"])
def test_realised_speedup_bad_run_dir_is_one_line_and_exit_2(tiny_runs, tmp_path, capsys, missing):
    dirs = {"dense": str(tiny_runs[0]), "pruned": str(tiny_runs[1]), missing: str(tmp_path / "nothing")}
    out = tmp_path / "speedup.json"
    with pytest.raises(SystemExit) as exit_info:
        _script("realised_speedup").main(
            ["--dense", dirs["dense"], "--pruned", dirs["pruned"], "--out", str(out)]
        )
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("realised_speedup: error: ")
    assert str(tmp_path / "nothing" / "arch.json") in lines[0]
    assert not out.exists()


def test_monitor_overhead_measures_three_arms_in_one_process():
    arms = _script("monitor_overhead").measure("resnet18", "random", 2, 4, 0.125, 2, torch.device("cpu"))
    assert set(arms) == {"plain", "full", "sampled"} and all(s > 0 for s in arms.values())


def test_monitor_sampling_error_compares_the_sampled_count_with_the_full_one():
    error = _script("monitor_overhead").sampling_error(
        "vgg11", "fashion-mnist", 6, 16, 0.125, 3, torch.device("cpu")
    )
    assert (error["batches"], error["every"], error["groups"]) == (6, 3, 8)
    assert 0 <= error["max_group_error"] <= error["max_channel_error"] <= 1
    assert 0 <= error["planned_widths_that_differ"] <= error["groups"]
    assert error["max_group_std_across_batches"] > 0


def test_cli_startup_times_every_command(tmp_path, monkeypatch):
    out = tmp_path / "startup.json"
    monkeypatch.setattr(sys, "argv", ["cli_startup.py", "--repeats", "1", "--out", str(out)])
    _script("cli_startup").main()
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == set(_script("cli_startup").COMMANDS)
    assert all(s > 0 for s in result["median_s"].values()) and isinstance(result["meets_target"], bool)
