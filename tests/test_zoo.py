"""Models nobody here wrote: timm's fused norm-activation layers, activations written by hand, cuts
that break a model only when more than one channel goes, group finding that used to hang, and the
timm families (each prunes and trains a step after the cut, or says why not at construction)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_bench_scripts import _script
from test_cli import run_cli
from torch import nn

import adprune
from adprune import ADPruner
from adprune.errors import AdpruneError
from adprune.models import build_model
from adprune.prune import tp_compat

timm = pytest.importorskip("timm")


def quiet_pruner(*args, **kwargs) -> ADPruner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ADPruner(*args, **kwargs)


def step(model, optimizer, x):
    model.train()
    optimizer.zero_grad()
    model(x).float().logsumexp(-1).mean().backward()
    optimizer.step()


class FusedAndHandWritten(nn.Module):
    """timm's BatchNormAct2d after one conv; hand-written SiLU and hard-swish after the others."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = timm.layers.BatchNormAct2d(8, act_layer=nn.SiLU)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.bn2(self.conv2(x))
        x = x * x.sigmoid()
        x = self.bn3(self.conv3(x))
        x = x * F.relu6(x + 3) / 6
        return self.fc(x.mean((2, 3)))


def test_fused_norm_activations_and_hand_written_activations_are_activations():
    model = FusedAndHandWritten()
    pruner = ADPruner(model, torch.randn(2, 3, 8, 8), torch.optim.SGD(model.parameters(), lr=0.1))
    # at 1227b9d: conv1 and conv2 were skipped as "no activation after them"
    assert pruner.widths == {"conv1": 8, "conv2": 8, "conv3": 8} and pruner.skipped == {}


class Separable(nn.Module):
    """PNASNet's separable conv: a grouped conv with one input channel per group and a depth multiplier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.sep = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.sep(torch.relu(self.conv1(x))))
        return self.fc(torch.relu(self.pw(x)).mean((2, 3)))


def test_channels_read_one_per_group_are_left_alone_with_the_reason():
    model = Separable()
    pruner = ADPruner(model, torch.randn(2, 3, 8, 8), torch.optim.SGD(model.parameters(), lr=0.1))
    assert pruner.widths == {"sep": 16, "pw": 8}  # at 1227b9d: conv1 listed, then kept whole in silence
    assert pruner.skipped == {
        "conv1": "a grouped conv or norm reads its 8 channels one per group (such as a separable conv with "
        "a depth multiplier): removing one would remove a whole group of that layer"
    }


class StoredSplit(nn.Module):
    """Splits its input by a size kept as a Python int (as res2net and SK-ResNet do): losing the last
    channel is harmless, losing one from the first chunk breaks the next forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.width = 4
        self.branch_a = nn.Conv2d(4, 4, 3, padding=1)
        self.branch_b = nn.Conv2d(4, 4, 3, padding=1)
        self.other = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(14, 10)

    def forward(self, x):
        a, b = torch.split(F.relu(self.conv(x)), self.width, 1)
        y = torch.cat([F.relu(self.branch_a(a)), F.relu(self.branch_b(b)), F.relu(self.other(x))], 1)
        return self.fc(y.mean((2, 3)))


def test_a_cut_that_would_break_the_model_is_refused_and_the_model_still_runs():
    torch.manual_seed(0)
    model = StoredSplit()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)
    pruner = ADPruner(model, x, optimizer, fade=0)
    assert "conv" in pruner.widths  # the trial (one channel, the last) says it is safe
    step(model, optimizer, x)
    densities = {name: torch.linspace(0.05, 0.95, width) for name, width in pruner.widths.items()}
    with pytest.warns(UserWarning, match="channel group conv keeps its width: pruning it breaks the model"):
        pruner.prune(0, densities)
    assert model.conv.out_channels == 8 and "conv" in pruner.skipped and "conv" not in pruner.widths
    assert model.other.out_channels < 6  # the other groups were cut
    step(model, optimizer, x)  # at 1227b9d: this step crashed


def test_a_group_search_past_its_time_limit_is_left_alone_with_the_reason(monkeypatch):
    monkeypatch.setattr(tp_compat, "ROOT_SEARCH_SECONDS", -1.0)
    model = StoredSplit()
    pruner = quiet_pruner(model, torch.randn(2, 3, 8, 8), torch.optim.SGD(model.parameters(), lr=0.1))
    assert pruner.widths == {}
    assert set(pruner.skipped.values()) == {
        "Torch-Pruning's search for the layers coupled to it ran past -1 s, so it is left alone"
    }


# One small member of each family the issue names, measured by the bench script that writes the
# README's table; 64x64 inputs so that every stride fits.
FAMILIES = _script("timm_families")


@pytest.mark.parametrize("name", FAMILIES.FAMILIES)
def test_a_timm_family_prunes_and_trains_a_step_after_the_cut_or_says_why_not(name):
    started = time.monotonic()
    row = FAMILIES.measure(name)  # builds, trains a step, prunes, trains a step after the cut
    assert time.monotonic() - started < tp_compat.SEARCH_SECONDS * 2 + 60
    assert row["pruned_groups"] > 0, f"{name}: nothing to prune ({row['skipped']})"
    assert row["params_after"] < row["params_before"] and math.isfinite(row["loss_after_cut"])


def test_timm_models_by_name_and_a_one_line_error_for_an_unknown_one():
    model = build_model("timm:resnet10t", in_channels=1, num_classes=7, image_size=32)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(AdpruneError, match=r"unknown timm model timm:no_such_net: .*timm.list_models"):
        build_model("timm:no_such_net", in_channels=3, num_classes=10)
    with pytest.raises(AdpruneError, match=r"width=0\.5 is only supported by our models"):
        build_model("timm:resnet10t", in_channels=3, num_classes=10, width=0.5)


def test_the_cli_trains_prunes_and_reloads_a_timm_model(tmp_path):
    out = tmp_path / "timm"
    result = run_cli(
        "train", "--model", "timm:resnet10t", "--subset", "256", "--epochs", "2", "--batch-size", "64",
        "--prune-at", "1", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    model = adprune.load(out)
    dense = build_model("timm:resnet10t", in_channels=1, num_classes=10, image_size=28)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dense.parameters())


def test_the_timm_style_example_loop_prunes_trains_and_saves_a_model_that_loads(tmp_path):
    """EMA + AMP + channels-last + compile + clipping + a cosine schedule (examples/timm_loop.py)."""
    example = Path(__file__).parents[1] / "examples" / "timm_loop.py"
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(example), "--model", "resnet10t", "--epochs", "4", "--prune-at", "0", "2",
         "--images", "256", "--compile-backend", "aot_eager", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("pruned") == 2, result.stdout
    for name in ("model.safetensors", "ema.safetensors"):
        model = adprune.load_pruned(out / name, timm.create_model("resnet10t", num_classes=10))
        assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
