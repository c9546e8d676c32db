"""`adprune bench`: ADP beside the dense baseline and the peer pruning methods, on one model and budget.

A bench configuration (JSON) names the shared training options and the methods. Every method is a
`train()` run of its own in `runs_dir/<method>/seed-<n>`, all in this process one after another, so
every figure in the result table is read from a run's own `summary.json` (written from its ledger).
The peer methods are matched to `adp-inherit`'s outcome of the same seed, so it runs first:

- `dense`: the full network for the whole budget.
- `adp-inherit` / `adp-reinit`: ADP pruning in training, weights kept / re-initialised at each prune.
- `adp-early-k`: one ADP prune after epoch k (for each k in `early_k`), weights kept.
- `uniform`: every layer shrunk by one factor to `adp-inherit`'s final parameter count, trained for
  the whole budget.
- `slimming`: Network Slimming: L1 on BatchNorm scales until `adp-inherit`'s last prune epoch, then
  one global BN-scale prune to `adp-inherit`'s parameter count, fine-tuned to the end of the budget.
- `l1-filter`: L1-norm filter pruning to `adp-inherit`'s widths after the same epochs.
- `train-prune-finetune`: the pipeline the reference claims to beat: the dense run's final weights
  (the `dense` row, trained once) pruned once to `adp-inherit`'s final widths by filter L1 norm and
  fine-tuned for `finetune_epochs` at `finetune_lr` (default: a tenth of the training lr); its
  totals include the dense run's training cost (`--start-from`).

With a `frontier` (a list of prune counts K) adp-inherit runs once per K (`--max-prunes K`, rows
`adp-inherit-pK`) and every matched method once per K at that run's size (`uniform-pK`, ...); the
result then names each method's largest compression within 1 and 3 points of dense (`reach`).

Finished runs are reused and interrupted ones resumed, so a bench that crashed continues where it
stopped when run again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import AdpruneError
from ..runs.atomic import atomic_write_bytes, atomic_write_json
from ..runs.rundir import CONFIG_FILE, SUMMARY_FILE, read_json
from ..train.config import TrainConfig
from ..train.config_file import validate_config
from ..train.loop import print_now, train
from .config import MATCHED, METHODS, RUN_ONLY_OPTIONS, BenchConfig
from .frontier import frontier_png, reach
from .methods import MethodRun, NothingToMatch, method_configs
from .table import add_ratios, bench_row, environment, format_markdown


def _comparable(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_ONLY_OPTIONS}


def run_once(config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """The summary of the run `config` describes: reused when finished with the same options, resumed
    when interrupted, else trained from scratch (replacing a run made with other options)."""
    out = Path(config.out)
    saved = None
    if (out / CONFIG_FILE).exists():
        try:
            options = validate_config(read_json(out / CONFIG_FILE), out / CONFIG_FILE)
            saved = _comparable(TrainConfig(**options))
        except AdpruneError:
            saved = None
    if saved == _comparable(config):
        if (out / SUMMARY_FILE).exists():
            log(f"reusing the finished run {out}")
            return read_json(out / SUMMARY_FILE)
        log(f"resuming {out}")
        return train(config, log, resume=True)
    log(f"training {out}")
    return train(config, log)


def _order(methods: Sequence[str]) -> list[str]:
    """Methods in run order: adp-inherit first among the methods matched to it."""
    return sorted(set(methods), key=METHODS.index)


def run_bench(
    config: BenchConfig,
    runs_dir: str | Path,
    results_dir: str | Path,
    log: Callable[[str], None] = print_now,
) -> dict[str, Any]:
    """Run every method of `config` for every seed, write `<results_dir>/<name>.json` and `.md`, and
    return the result (`{"name", "config", "environment", "seeds", "rows", "notes"}`).

    Methods matched to adp-inherit (uniform, slimming, l1-filter) make it run too. The result files
    are written after every finished run, so a partial bench still leaves a table.
    """
    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    methods = _order(config.methods)
    needed = set(methods)
    if set(MATCHED) & needed:
        needed.add("adp-inherit")
    if "train-prune-finetune" in needed:
        needed.add("dense")
    run_methods = _order(needed)
    shown = {r.name: r for method in methods for r in method_configs(config, method, runs_dir, 0)}
    done: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    skipped: list[str] = []
    for seed in range(config.seeds):
        for method in run_methods:
            for method_run in method_configs(config, method, runs_dir, seed):
                name = method_run.name
                try:
                    train_config = method_run.build()
                except NothingToMatch as exc:
                    skipped.append(f"{name}, seed {seed}: not run, {exc}")
                    log(f"bench {config.name}: {skipped[-1]}")
                    continue
                log(f"bench {config.name}: {name}, seed {seed}")
                done.setdefault(name, []).append((train_config.out, run_once(train_config, log)))
                _write_result(config, done, [r for n, r in shown.items() if n in done], results_dir, skipped)
    return _write_result(config, done, [r for n, r in shown.items() if n in done], results_dir, skipped)


def _write_result(
    config: BenchConfig,
    done: dict[str, list],
    shown: Sequence[MethodRun],
    results_dir: Path,
    skipped: list[str],
) -> dict[str, Any]:
    rows = [bench_row(r.name, done[r.name], r.method, r.level) for r in shown]
    add_ratios(rows)
    summaries = [s for r in shown for _, s in done[r.name]]
    notes = [] if any(r["method"] == "dense" for r in rows) else ["no dense row: ratios are left out"]
    notes += skipped
    result = {
        "name": config.name, "description": config.description, "config": dataclasses.asdict(config),
        "environment": environment(summaries), "seeds": config.seeds, "rows": rows, "notes": notes,
    }  # fmt: skip
    if any(r.get("acc_delta_pts") is not None for r in rows):
        result["reach"] = reach(rows)
    results_dir.mkdir(parents=True, exist_ok=True)
    png = frontier_png(result)
    if png is not None:
        atomic_write_bytes(results_dir / f"{config.name}.png", png)
    atomic_write_json(results_dir / f"{config.name}.json", result)
    atomic_write_bytes(results_dir / f"{config.name}.md", format_markdown(result).encode("utf-8"))
    return result
