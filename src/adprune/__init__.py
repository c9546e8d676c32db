"""adprune: prune convolutional networks while they train, guided by activation density.

Packages, from the method outwards (imports only flow towards the method; ARCHITECTURE.md has the map):

- `adprune.prune`: the method (channel groups, density, plan, surgery, cost, `ADPruner`);
- `adprune.models`: the model registry (CIFAR VGG/ResNet, torchvision classifiers);
- `adprune.runs`: run files (run directory, model files, checkpoints, export, atomic writes);
- `adprune.train`: the training harness (options, data, loop, resume, DDP);
- `adprune.report`: tables, plots and the HTML report;
- `adprune.bench`: ADP against the dense baseline and the peer methods;
- `adprune.cli`: the `adprune` command line; `adprune.lightning`: the Lightning callback.

The names below are imported on first use, so `import adprune` (and the command line's help and
argument errors) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import AdpruneError

_LAZY = {
    "ADPruner": "adprune.prune.pruner",
    "ConvergenceTrigger": "adprune.prune.plan",
    "DensityMonitor": "adprune.prune.density",
    "load": "adprune.runs.model_files",
    "plan_width": "adprune.prune.plan",
    "plan_widths": "adprune.prune.plan",
}

__all__ = [
    "ADPruner",
    "AdpruneError",
    "ConvergenceTrigger",
    "DensityMonitor",
    "load",
    "plan_width",
    "plan_widths",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'adprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
