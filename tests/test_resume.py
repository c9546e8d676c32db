"""A run killed with SIGKILL at any point and resumed ends exactly like a run never killed."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

SRC = str(Path(__file__).parents[1] / "src")
TRAIN = [
    "train", "--model", "vgg11", "--width", "0.125", "--subset", "384", "--epochs", "4", "--prune-at", "2",
    "--batch-size", "64", "--lr", "0.02", "--no-progress", "--no-report",
]  # fmt: skip

# Each kill point patches one function in the child process so that it SIGKILLs itself there.
KILLERS = {
    "mid-epoch": """
        import adprune.train.data as m
        original = m.BatchLoader.__iter__
        def patched(self):
            for i, batch in enumerate(original(self)):
                if self.train and self.epoch == 3 and i == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch
        m.BatchLoader.__iter__ = patched
    """,
    "mid-prune": """
        import adprune.prune.surgery as m
        original = m.prune_group
        calls = []
        out = Path(sys.argv[sys.argv.index("--out") + 1])
        def patched(*args, **kwargs):
            if (out / "checkpoints" / "epoch-0001").exists():  # the prune after epoch 2, not a trial
                calls.append(1)
                if len(calls) == 3:  # two groups already cut, the rest not
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        m.prune_group = patched
    """,
    "mid-checkpoint-write": """
        import adprune.runs.checkpoints as m
        original = m.atomic_write_bytes
        def patched(path, data):
            if "epoch-0003" in str(path) or ".epoch-0003" in str(path):
                if path.name == "optimizer.safetensors":
                    Path(str(path) + ".partial").write_bytes(data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(path, data)
        m.atomic_write_bytes = patched
    """,
    "between-metrics-and-checkpoint": """
        import adprune.train.loop as m
        original = m.save_training_state
        def patched(run_dir, epoch, *args, **kwargs):
            if epoch == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(run_dir, epoch, *args, **kwargs)
        m.save_training_state = patched
    """,
    "final-model-write": """
        import adprune.train.loop as m
        def patched(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        m.save_model = patched
    """,
}


def _run(args, killer: str | None = None) -> subprocess.CompletedProcess:
    prelude = "import os, signal, sys\nfrom pathlib import Path\n" + textwrap.dedent(KILLERS.get(killer, ""))
    code = prelude + "\nfrom adprune.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": SRC}
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("wall_s")
        record.pop("energy_j")
    return records


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    result = _run([*TRAIN, "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("killer", list(KILLERS))
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path, reference, killer):
    out = tmp_path / "run"
    killed = _run([*TRAIN, "--out", str(out)], killer)
    assert killed.returncode == -9, killed.stderr
    resumed = _run(["train", "--resume", str(out), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert _metrics(out) == _metrics(reference)
    final, expected = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    assert all(final[k].equal(expected[k]) for k in expected)
    assert json.loads((out / "arch.json").read_text()) == json.loads((reference / "arch.json").read_text())


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    out = tmp_path / "run"
    killed = _run([*TRAIN, "--out", str(out)], "final-model-write")
    assert killed.returncode == -9
    newest = sorted((out / "checkpoints").glob("epoch-*"))[-1]
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    resumed = _run(["train", "--resume", str(out), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert "damaged" in resumed.stdout and newest.name in resumed.stdout
    assert _metrics(out) == _metrics(reference)


def _edit_state(checkpoint: Path, edit) -> None:
    state = json.loads((checkpoint / "state.json").read_text())
    edit(state)
    (checkpoint / "state.json").write_text(json.dumps(state))


def _set_width(value):
    def edit(state):
        first = next(iter(state["widths"]))
        state["widths"][first] = value(state["widths"][first])

    return edit


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (_set_width(lambda w: w + 0.5), "invalid widths"),  # not a channel count
        (_set_width(lambda w: w - 1), "size mismatch"),  # a width the saved weights do not have
        (
            lambda state: state["optimizer_groups"][0]["params"].append("features.99.weight"),
            "other parameters",
        ),
    ],
)
def test_a_checkpoint_whose_state_does_not_fit_its_weights_is_damaged(tmp_path, reference, edit, why):
    out = tmp_path / "run"
    assert _run([*TRAIN, "--out", str(out)], "final-model-write").returncode == -9
    newest = sorted((out / "checkpoints").glob("epoch-*"))[-1]
    _edit_state(newest, edit)
    resumed = _run(["train", "--resume", str(out), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    warning = next(line for line in resumed.stdout.splitlines() if "damaged" in line)
    assert newest.name in warning and why in warning
    assert _metrics(out) == _metrics(reference)


def test_resume_without_a_restorable_checkpoint_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "run"
    assert _run([*TRAIN, "--out", str(out)], "final-model-write").returncode == -9
    for checkpoint in (out / "checkpoints").glob("epoch-*"):
        _edit_state(checkpoint, _set_width(lambda w: "wide"))
    metrics = (out / "metrics.jsonl").read_text()
    resumed = _run(["train", "--resume", str(out), "--no-progress"])
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    (line,) = resumed.stderr.strip().splitlines()
    assert "no checkpoint of" in line and "can be restored" in line and "--overwrite" in line
    assert (out / "metrics.jsonl").read_text() == metrics  # nothing written before the error is lost


def test_an_overwritten_run_leaves_no_checkpoint_of_the_earlier_one_to_resume(tmp_path):
    from adprune.cli import main

    out = tmp_path / "run"
    args = [*TRAIN[: TRAIN.index("--epochs")], "--out", str(out), "--prune", "none"]
    assert main([*args, "--epochs", "3"]) == 0
    assert main([*args, "--epochs", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001"]
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
