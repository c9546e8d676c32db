"""adprune: prune convolutional networks while they train, guided by activation density.

Packages, from the method outwards (imports only flow towards the method; ARCHITECTURE.md has the map):

- `adprune.prune`: the method (groups, density, triggers, widths, importance, selection, surgery, `ADPruner`);
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
    "ConvergenceTrigger": "adprune.prune.triggers",
    "DensityMonitor": "adprune.prune.density",
    "DensityPlan": "adprune.prune.widths",
    "FixedEpochs": "adprune.prune.triggers",
    "ParameterTarget": "adprune.prune.widths",
    "RankingTrigger": "adprune.prune.triggers",
    "WidthSchedule": "adprune.prune.widths",
    "load": "adprune.runs.model_files",
    "load_pruned": "adprune.runs.pruned_files",
    "plan_width": "adprune.prune.widths",
    "plan_widths": "adprune.prune.widths",
    "recalibrate_batchnorm": "adprune.prune.recalibrate",
    "save_pruned": "adprune.runs.pruned_files",
}

__all__ = ["AdpruneError", *_LAZY]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'adprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
