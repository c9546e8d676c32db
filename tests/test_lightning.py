"""ADPruneCallback prunes a LightningModule inside Trainer.fit and training goes on with the pruned model."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from adprune import AdpruneError  # noqa: E402
from adprune.lightning import ADPruneCallback  # noqa: E402


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


def _trainer(tmp_path, callback, logger=True):
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(
        max_epochs=3,
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
    callback = ADPruneCallback(prune_at=[0], min_channels=2)
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
    callback = ADPruneCallback(torch.zeros(2, 3, 8, 8), prune_at=[0], log_groups=False, check=False)
    _trainer(tmp_path, callback, logger=False).fit(module)
    assert [e.epoch for e in callback.pruner.events] == [1]


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
