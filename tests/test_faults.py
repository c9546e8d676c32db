"""Training faults: a NaN loss, a full disk and Ctrl-C stop the run cleanly and leave a resumable run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = str(Path(__file__).parents[1] / "src")
TRAIN = [
    "train", "--model", "vgg11", "--width", "0.125", "--subset", "256", "--epochs", "3", "--batch-size", "64",
    "--lr", "0.02", "--no-progress", "--no-report",
]  # fmt: skip
NAN_AT_EPOCH_2_STEP_3 = """
    import torch
    import adprune.train.run as m
    calls = []
    class NaNAtStep(torch.nn.CrossEntropyLoss):
        def forward(self, output, labels):
            calls.append(1)
            loss = super().forward(output, labels)
            return loss * float("nan") if len(calls) == 4 + 3 else loss  # 4 steps per epoch
    m.nn.CrossEntropyLoss = NaNAtStep
"""
DISK_FULL_AT_EPOCH_2 = """
    import errno
    import adprune.runs.checkpoints as m
    original = m.atomic_write_bytes
    def patched(path, data):
        if ".epoch-0002" in str(path) and path.name == "rng.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(path, data)
    m.atomic_write_bytes = patched
"""


def _command(prelude: str, args) -> list[str]:
    code = (
        "import sys\n"
        + textwrap.dedent(prelude)
        + "\nfrom adprune.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    return [sys.executable, "-c", code, *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC}


def _one_line_error(result) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def _train_with_fault(fault: str, out: Path) -> str:
    """Train with `fault` injected; the one-line error it ends with."""
    command = _command(fault, [*TRAIN, "--out", str(out)])
    return _one_line_error(subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600))


def test_nan_loss_names_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    line = _train_with_fault(NAN_AT_EPOCH_2_STEP_3, out)
    assert "epoch 2, step 3" in line and "--resume" in line
    assert _checkpoints(out) == ["epoch-0001"]
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_full_disk_while_checkpointing_leaves_the_previous_checkpoint_intact(tmp_path):
    out = tmp_path / "run"
    line = _train_with_fault(DISK_FULL_AT_EPOCH_2, out)
    assert "No space left on device" in line and "previous checkpoint is intact" in line
    assert _checkpoints(out) == ["epoch-0001"]
    command = _command("", ["train", "--resume", str(out), "--no-progress"])
    resumed = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and (out / "summary.json").exists()


def test_ctrl_c_exits_cleanly_with_a_resume_hint(tmp_path):
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", "30", "--out", str(out)]
    process = subprocess.Popen(_command("", args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env())  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "epoch-0001").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and "Traceback" not in stderr
    assert "interrupted" in stderr and f"adprune train --resume {out}" in stderr
    assert _checkpoints(out)[0].startswith("epoch-")
