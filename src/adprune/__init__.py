"""adprune: prune convolutional networks while they train, guided by activation density."""

from .checkpoint import load
from .density import DensityMonitor
from .errors import AdpruneError
from .plan import ConvergenceTrigger, plan_width, plan_widths
from .pruner import ADPruner

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
