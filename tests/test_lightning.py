"""ADPruneCallback prunes a LightningModule inside Trainer.fit and training goes on with the pruned model."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from adprune import AdpruneError  # noqa: E402
from adprune.lightning import ADPruneCallback, shrink_to_checkpoint  # noqa: E402
from adprune.prune.widths import DensityPlan  # noqa: E402


class TinyNet(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 4),
        )
        self.example_input_array = torch.zeros(2, 3, 8, 8)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return {
            "optimizer": optimizer,
            "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.9),
        }

    def train_dataloader(self):
        x = torch.randn(64, 3, 8, 8)
        y = torch.randint(0, 4, (64,))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def _trainer(tmp_path, callback, logger=True, max_epochs=3):
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path) if logger else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=[callback],
    )


def test_callback_prunes_in_fit_and_training_goes_on(tmp_path):
    module = TinyNet()
    params_before = sum(p.numel() for p in module.parameters())
    callback = ADPruneCallback(trigger=[0], widths=DensityPlan(min_channels=2))
    trainer = _trainer(tmp_path, callback)
    trainer.fit(module)

    pruner = callback.pruner
    assert [(e.decided, e.epoch) for e in pruner.events] == [(0, 1)]  # decided, faded out, cut
    assert sum(p.numel() for p in module.parameters()) < params_before
    assert module.net[0].out_channels == pruner.widths["net.0"] < 16
    # the Trainer's optimizer is the pruner's, holds exactly the module's parameters; the scheduler follows
    (optimizer,) = trainer.optimizers
    assert optimizer is pruner.optimizer
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in module.parameters()
    }
    assert all(optimizer.state[p]["momentum_buffer"].shape == p.shape for p in module.parameters())
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is optimizer
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.9**3)
    assert [line.epoch for line in pruner.ledger] == [0, 1, 2]

    with Path(trainer.logger.log_dir, "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    by_epoch = {}
    for row in rows:
        for key, value in row.items():
            if value != "":
                by_epoch.setdefault(int(row["epoch"]), {})[key] = value
    assert set(by_epoch) == {0, 1, 2}
    last = by_epoch[2]
    assert float(last["train_loss"]) > 0  # trained after the prune
    assert float(last["adprune/params"]) == sum(p.numel() for p in module.parameters())
    assert float(by_epoch[1]["adprune/pruned"]) == 1.0 and float(last["adprune/pruned"]) == 0.0
    assert int(float(last["adprune/width/net.0"])) == module.net[0].out_channels
    assert 0 < float(by_epoch[0]["adprune/density/net.0"]) < 1


def test_example_input_argument_and_no_logger(tmp_path):
    module = TinyNet()
    module.example_input_array = None
    callback = ADPruneCallback(torch.zeros(2, 3, 8, 8), trigger=[0], log_groups=False, check=False)
    _trainer(tmp_path, callback, logger=False).fit(module)
    assert [e.epoch for e in callback.pruner.events] == [1]


def test_at_its_defaults_the_callback_sizes_the_pruner_to_max_epochs(tmp_path):
    callback = ADPruneCallback(widths=DensityPlan(min_channels=2))
    _trainer(tmp_path, callback, logger=False, max_epochs=7).fit(TinyNet())
    pruner = callback.pruner
    # epochs 0..6: the final network trains 5 of 7, so the ranking trigger, which cannot fire after one
    # epoch, is overruled: the network is sized once after epoch 0 and cut after epoch 1
    assert pruner.limits.deadline == 0 and pruner.finished
    assert [(e.decided, e.epoch) for e in pruner.events] == [(0, 1)]


def test_bad_arguments_say_how_to_fix_them(tmp_path):
    with pytest.raises(AdpruneError, match=r"unknown option.*prune_every"):
        ADPruneCallback(prune_every=2)
    with pytest.raises(AdpruneError, match="must be a tensor"):
        ADPruneCallback([1, 2])
    module = TinyNet()
    module.example_input_array = None
    with pytest.raises(AdpruneError, match="example_input_array"):
        _trainer(tmp_path, ADPruneCallback(), logger=False).fit(module)


def test_without_lightning_the_callback_says_how_to_install_it():
    code = (
        "import sys\n"
        "for name in ('lightning', 'lightning.pytorch', 'pytorch_lightning'):\n"
        "    sys.modules[name] = None\n"
        "from adprune.lightning import ADPruneCallback\n"
        "from adprune import AdpruneError\n"
        "try:\n"
        "    ADPruneCallback()\n"
        "except AdpruneError as exc:\n"
        "    print(exc)\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "pip install adprune[lightning]" in out


class ReloadableNet(TinyNet):
    """TinyNet with the one hook that makes a pruned checkpoint load."""

    def on_load_checkpoint(self, checkpoint):
        shrink_to_checkpoint(self, checkpoint)


def _checkpointing_trainer(tmp_path, callback, max_epochs):
    return pl.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[callback],
    )  # fmt: skip


def test_a_pruned_checkpoint_loads_into_a_fresh_module_and_resumes_pruning(tmp_path):
    torch.manual_seed(0)
    module = ReloadableNet()
    first = ADPruneCallback(trigger=[0, 2], widths=DensityPlan(min_channels=2))
    trainer = _checkpointing_trainer(tmp_path, first, max_epochs=2)  # stops before the second prune
    trainer.fit(module)
    path = trainer.checkpoint_callback.best_model_path
    assert [(e.decided, e.epoch) for e in first.pruner.events] == [(0, 1)]

    loaded = ReloadableNet.load_from_checkpoint(path)
    assert loaded.net[0].out_channels == module.net[0].out_channels < 16
    x = torch.randn(5, 3, 8, 8)
    module.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))

    second = ADPruneCallback(trigger=[0, 2], widths=DensityPlan(min_channels=2))
    resumed = ReloadableNet()
    _checkpointing_trainer(tmp_path / "resumed", second, max_epochs=5).fit(resumed, ckpt_path=path)
    events = second.pruner.events
    assert [(e.decided, e.epoch) for e in events] == [(0, 1), (2, 3)]  # the first came from the checkpoint
    assert resumed.net[0].out_channels == events[-1].widths_after["net.0"] < module.net[0].out_channels
    assert [line.epoch for line in second.pruner.ledger] == [0, 1, 2, 3, 4]


def test_a_checkpoint_without_the_callback_is_left_alone():
    module = ReloadableNet()
    shrink_to_checkpoint(module, {"state_dict": {}})
    assert module.net[0].out_channels == 16


DDP_SCRIPT = """
import json, sys, torch
import lightning.pytorch as pl
sys.path.insert(0, {tests!r})
from test_lightning import TinyNet
from adprune.lightning import ADPruneCallback
from adprune.prune.widths import DensityPlan

class Logged(TinyNet):
    def on_train_epoch_end(self):
        record = {{"rank": self.global_rank, "epoch": self.current_epoch,
                   "widths": callback.pruner.widths, "params": sum(p.numel() for p in self.parameters()),
                   "checksum": float(sum(p.detach().double().sum() for p in self.parameters()))}}
        with open({out!r} + f"/rank{{self.global_rank}}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\\n")

torch.manual_seed(0)
callback = ADPruneCallback(trigger=[0], widths=DensityPlan(min_channels=2))
trainer = pl.Trainer(max_epochs=3, accelerator="cpu", strategy="ddp", devices=2, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[callback])
trainer.fit(Logged())
"""


def test_under_ddp_both_ranks_prune_identically_and_train_the_pruned_module(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [
        [json.loads(line) for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)
    ]
    assert [r["epoch"] for r in ranks[0]] == [r["epoch"] for r in ranks[1]] == [0, 1, 2]
    assert [r["widths"] for r in ranks[0]] == [r["widths"] for r in ranks[1]]
    last = ranks[0][-1]
    assert last["params"] < ranks[0][0]["params"]  # pruned (decided after epoch 0, cut after epoch 1)
    # each rank trains on its own shard: only gradients all-reduced by a DDP wrapper around the pruned
    # module keep the weights identical
    assert [r["checksum"] for r in ranks[0]] == [r["checksum"] for r in ranks[1]]


def test_lightning_weight_averaging_is_pruned_in_step_and_averages_on(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    torch.manual_seed(0)
    module = TinyNet()
    averaging = EMAWeightAveraging(decay=0.9)
    callback = ADPruneCallback(trigger=[0], fade=0, widths=DensityPlan(min_channels=2))
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[averaging, callback],
    )  # fmt: skip
    trainer.fit(module)  # before: the averaging's update after the cut raised a size mismatch
    assert len(callback.pruner.events) == 1
    average = averaging._average_model.module
    assert {k: v.shape for k, v in average.state_dict().items()} == {
        k: v.shape for k, v in module.state_dict().items()
    }
    assert average.net[0].out_channels == module.net[0].out_channels < 16
