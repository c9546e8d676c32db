"""The HTML report on hand-written run directories and bench files: figures, numbers, bad input, CLI."""

import argparse
import base64
import json
import re
import warnings
from pathlib import Path

import pytest

from adprune.cli.report import add_parser
from adprune.errors import AdpruneError
from adprune.report.html import ReportWarning, write_report
from adprune.report.inputs import load_run

LAYERS = ("features.0", "features.3", "features.6")
RUN_FIGURES = ("curves.png", "density.png", "widths.png", "costs.png")


def make_run(path: Path, *, epochs: int = 4, logged: int | None = None, prune_at: int = 2,
             dataset: str = "fashion-mnist", scale: int = 1) -> Path:  # fmt: skip
    """A run directory as `adprune train` leaves it; `logged` < `epochs` leaves it unfinished."""
    path.mkdir(parents=True)
    config = {"out": str(path), "model": "vgg11", "dataset": dataset, "prune": "adp", "mode": "inherit",
              "epochs": epochs}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    widths = {name: 16 * (i + 1) * scale for i, name in enumerate(LAYERS)}
    records, total = [], 0
    for epoch in range(1, (logged or epochs) + 1):
        after = {k: v // 2 for k, v in widths.items()} if epoch == prune_at else widths
        params, macs = sum(widths.values()) * 1000, sum(widths.values()) * 50_000
        total += macs * 3 * 2000
        records.append({
            "epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5 + 0.1 * epoch,
            "test_loss": 1.2 / epoch, "test_acc": 0.45 + 0.1 * epoch,
            "density": {k: round(0.3 + 0.1 * i + 0.02 * epoch, 3) for i, k in enumerate(LAYERS)},
            "widths": widths, "widths_after": after, "params": params,
            "params_after": sum(after.values()) * 1000, "macs": macs, "train_flops": macs * 3 * 2000,
            "train_flops_total": total, "samples": 2000, "wall_s": {"train": 2.0, "eval": 0.5, "prune": 0.1},
            "energy_j": None, "lr": 0.05, "pruned": epoch == prune_at,
        })  # fmt: skip
        widths = after
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if logged is None:
        first, last = records[0], records[-1]
        summary = {
            "model": "vgg11", "dataset": dataset, "prune": "adp", "mode": "inherit", "epochs": epochs,
            "train_samples": 2000, "test_acc": last["test_acc"], "test_loss": last["test_loss"],
            "params_initial": first["params"], "params": last["params"], "macs_initial": first["macs"],
            "macs": last["macs"], "train_flops_total": total,
            "wall_s": {"train": 8.0, "eval": 2.0, "prune": 0.4}, "energy_j": None, "energy_source": None,
            "device": "cpu",
            "prunes": [{"epoch": prune_at, "widths_before": first["widths"], "widths_after": last["widths"],
                        "params_before": first["params"], "params_after": last["params"], "seconds": 0.1}],
            "widths": last["widths"],
        }  # fmt: skip
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def embedded_images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, str]:
    run = make_run(tmp_path_factory.mktemp("single") / "adp")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReportWarning)
        report = write_report([run])
    return report, report.read_text()


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, str, list[str]]:
    base = tmp_path_factory.mktemp("compare")
    dense = make_run(base / "dense", prune_at=0, scale=2)
    adp = make_run(base / "adp", dataset="cifar10")
    bench = base / "small.json"
    bench.write_text(json.dumps({"name": "small", "config": {"epochs": 4}, "rows": [
        {"method": "dense", "test_acc": 0.9, "test_acc_std": 0.01, "params": 100_000, "macs": 10**7,
         "train_flops_total": 10**12, "wall_s": 30.0, "energy_j": None},
        {"method": "adp", "test_acc": 0.88, "params": 20_000, "train_flops_total": 4 * 10**11, "seed": 3},
    ]}))  # fmt: skip
    with pytest.warns(ReportWarning) as record:
        report = write_report([dense, adp, bench], base / "out")
    return report, report.read_text(), [str(w.message) for w in record]


def test_single_run_writes_every_figure_into_the_run_dir_and_embeds_it(single):
    report, page = single
    assert report.name == "report.html" and report.parent.name == "report"
    assert (report.parent.parent / "metrics.jsonl").is_file()
    images = embedded_images(page)
    for name in RUN_FIGURES:
        png = (report.parent / name).read_bytes()
        assert png.startswith(b"\x89PNG") and png in images
    assert len(images) == len(RUN_FIGURES)


def test_summary_numbers_match_summary_json(single):
    report, page = single
    summary = json.loads((report.parent.parent / "summary.json").read_text())
    expected = [f"{100 * summary['test_acc']:.2f}%", f"{summary['test_loss']:.4f}"]
    expected += [
        f"{summary[k]:,}" for k in ("params", "params_initial", "macs", "macs_initial", "train_flops_total")
    ]
    expected.append(f"{sum(summary['wall_s'].values()):,.1f} s")
    assert all(text in page for text in expected)
    assert "finished" in page and "PARTIAL" not in page
    for layer in LAYERS:  # final architecture: layer, initial width, final width, share kept
        initial, final = summary["prunes"][0]["widths_before"][layer], summary["widths"][layer]
        assert f"<td>{layer}</td><td>{initial:,}</td><td>{final:,}</td><td>50.0%</td>" in page


def test_page_is_self_contained(single):
    _, page = single
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "url(" not in page and "@import" not in page and "<script" not in page


def test_comparison_and_bench_sections(compared):
    report, page, _ = compared
    files = {p.name for p in report.parent.iterdir()}
    expected = {"compare-tradeoff.png", "bench1-tradeoff.png"} | {
        f"run{i}-{n}" for i in (1, 2) for n in RUN_FIGURES
    }
    assert expected <= files
    images = embedded_images(page)
    assert all((report.parent / name).read_bytes() in images for name in expected)
    assert "Comparison" in page and "Bench small" in page
    assert "n/a" in page  # the bench's missing optional keys


def test_comparison_ratios_come_from_compare_module(compared):
    from adprune.report.compare import comparison_rows, load_summaries

    report, page, _ = compared
    base = report.parent.parent
    rows = comparison_rows(load_summaries([base / "dense", base / "adp"]))
    assert f"{rows[1]['params_x']:.2f}" in page and f"{rows[1]['train_flops_x']:.2f}" in page
    assert f"{rows[1]['acc_delta_pts']:+.2f}" in page


def test_mixed_datasets_warn_in_output_and_on_page(compared):
    _, page, messages = compared
    assert any("different datasets" in m and "cifar10" in m for m in messages)
    assert "different datasets" in page


def test_partial_run_is_reported_as_partial(tmp_path):
    run = make_run(tmp_path / "running", epochs=6, logged=3)
    with pytest.warns(ReportWarning, match="partial run") as record:
        report = write_report([run], tmp_path / "out")
    page = report.read_text()
    assert "PARTIAL" in page and "3 of 6 epochs logged" in page and "no summary.json" in page
    assert "3 of 6 epochs logged" in str(record[0].message)
    assert "<title>adprune report (partial)</title>" in page


def test_corrupted_line_is_skipped_with_its_line_number(tmp_path):
    run = make_run(tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    loaded = load_run(run)
    assert [r["epoch"] for r in loaded.records] == [1, 2, 4]
    assert len(loaded.warnings) == 1 and f"{run / 'metrics.jsonl'}:3:" in loaded.warnings[0]


def test_not_a_run_directory_raises(tmp_path):
    with pytest.raises(AdpruneError, match=f"{tmp_path} is not a run directory"):
        write_report([tmp_path])
    with pytest.raises(AdpruneError, match="does not exist"):
        write_report([tmp_path / "missing"])


def test_cli_prints_the_report_path_and_warnings(tmp_path, capsys):
    run = make_run(tmp_path / "running", logged=2)
    parser = argparse.ArgumentParser(prog="adprune")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(run), "--out", str(tmp_path / "out")])
    assert args.run(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"report: {tmp_path / 'out' / 'report.html'}"
    assert "partial run" in err and (tmp_path / "out" / "report.html").is_file()


def test_density_grid_adds_the_summary_rows_the_records_have():
    from adprune.report.inputs import density_grid

    records = [
        {"epoch": 1, "density": {"a": 0.5, "b": 0.4}, "density_spread": 0.1, "dead_share": 0.0},
        {"epoch": 3, "density": {"a": 0.3}, "density_spread": 0.0, "dead_share": 0.25},
    ]
    span, density, summary = density_grid(records, ["a", "b"])
    assert span == [1, 2, 3]
    assert density[0][0] == 0.5 and density[0][2] == 0.3 and density[1][0] == 0.4
    assert all(v != v for v in (density[0][1], density[1][1], density[1][2]))  # NaN where missing
    assert [label for label, _ in summary] == ["spread across layers", "share of channels < 0.02"]
    assert summary[0][1][0] == 0.1 and summary[1][1][2] == 0.25
    assert density_grid([{"epoch": 1, "density": {"a": 0.5}}], ["a"])[2] == []  # older runs: no rows
    with_trigger = [{**records[0], "mask_change": None}, {**records[1], "mask_change": 0.125}]
    _, _, summary = density_grid(with_trigger, ["a", "b"])
    (label, changes) = summary[2]
    assert label == "channels whose fate changed" and changes[2] == 0.125
    assert changes[0] != changes[0] and changes[1] != changes[1]  # NaN: no change measured
