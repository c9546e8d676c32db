"""Every option of the method, declared once: its default, help text, choices and bounds.

`ADPruner`, the Lightning callback (through `ADPruner`) and `adprune train` (whose `TrainConfig`
builds its pruning fields from `METHOD_OPTIONS`) check values against these declarations, so a bound
or a choice is written in one place. Free of torch: the command line offers and checks the choices
before importing it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import AdpruneError

MODES = ("inherit", "reinit")
"""How a prune treats the channels it keeps: keep their weights, or re-initialise the new widths."""

IMPORTANCES = ("density", "entropy", "l1", "bn_scale")
"""The built-in importances (see `importance.py`): the least dense go (ADP), those whose firing
carries the least information go, the smallest filter L1 norms go, the smallest BatchNorm scales go."""

TRIGGERS = ("ranking", "density")
"""The built-in triggers by name (see `triggers.py`): when the channels a prune would remove stopped
changing, or when every layer's density stopped moving."""

MAX_EPOCHS = 100_000
"""A sanity bound on epoch counts, epoch numbers and patience."""


@dataclass(frozen=True)
class Option:
    """How one option is declared: help text, choices or bounds, and how a command line offers it.

    `low`/`high` bound a number (None is always allowed for an optional one); `low_open` refuses
    `low` itself; `whole` asks for a whole number. `flag` overrides the flag name
    (`--name-with-dashes`); a bool option defaulting to True is offered as that `--no-...` flag.
    `parser` reads a flag's text: `epochs` (comma-separated integers), `names` (comma-separated
    names) or `json` (a JSON file's object).
    """

    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float = math.inf
    low_open: bool = False
    whole: bool = False
    flag: str | None = None
    metavar: str | None = None
    parser: str | None = None

    def range_text(self) -> str:
        """The allowed range in words, e.g. 'in [1, 100,000]' or 'greater than 0'."""
        if self.high == math.inf:
            return f"greater than {self.low}" if self.low_open else f"at least {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high:,}]"

    def allows(self, value: Any) -> bool:
        """True when `value` is one of the choices, or a number (whole if asked) within the bounds."""
        if self.choices is not None:
            return value in self.choices
        if self.low is None:
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.whole and not isinstance(value, int):
            return False
        above = self.low < value if self.low_open else self.low <= value
        return above and value <= self.high

    def expected(self) -> str:
        """What a valid value is, in words."""
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        return f"{'a whole number' if self.whole else 'a number'} {self.range_text()}"


# name -> (default, declaration) of every option the method has (TrainConfig may override a default)
METHOD_OPTIONS: dict[str, tuple[Any, Option]] = {
    "trigger": ("ranking", Option(
        "without --prune-at, prune when the channels the plan would remove stopped changing (ranking) or "
        "when every layer's density stopped moving (density)", choices=TRIGGERS)),
    "tol": (None, Option(
        "the trigger's tolerance: share of channels whose fate changed (ranking, default 0.2) or density "
        "movement (density, default 0.02)", low=0, high=1, low_open=True)),
    "patience": (1, Option("... for this many epochs in a row", low=1, high=MAX_EPOCHS, whole=True)),
    "min_channels": (4, Option("no layer narrower than this", low=1, whole=True)),
    "round_to": (1, Option("round widths up to a multiple of this", low=1, whole=True)),
    "max_prunes": (None, Option(
        "at most this many prunes (default: the self-sizing rule decides, from the epochs left and the "
        "accuracy budget --max-drop)", low=0, whole=True)),
    "min_reduction": (0.05, Option(
        "stop pruning after a prune that removed less than this share of the parameters", low=0, high=1)),
    "fade": (1.0, Option(
        "fade the channels a prune removes out over this share of the next epoch, then remove them "
        "(0: remove at once, as the reference method does)", low=0, high=1)),
    "bn_recalibrate": (10, Option(
        "re-estimate the BatchNorm statistics on the last this many training batches of a fade, where "
        "the leaving channels are already off (0: no)", low=0, whole=True)),
    "density_every": (1, Option(
        "count activation densities on every N-th training step only (cheaper; an estimate whose error "
        "the README states)", low=1, high=MAX_EPOCHS, whole=True)),
    "mode": ("inherit", Option(
        "inherit: keep the densest channels and their weights; reinit: fresh weights at the new widths",
        choices=MODES)),
    "importance": ("density", Option(
        "which channels a prune removes: the least dense (ADP), those whose firing carries the least "
        "information (density nearest 0 or 1), the smallest filter L1 norms, or the smallest BatchNorm "
        "scales", choices=IMPORTANCES)),
    "target_params": (None, Option(
        "prune to about this many parameters by one global ranking of channels by --importance",
        low=1, whole=True)),
}  # fmt: skip


def method_default(name: str) -> Any:
    """The default of method option `name`."""
    return METHOD_OPTIONS[name][0]


def method_field(name: str, **overrides: Any) -> Any:
    """A dataclass field for method option `name` carrying its `Option` (for `TrainConfig`);
    `default` and any `Option` field may be overridden."""
    default, declared = METHOD_OPTIONS[name]
    default = overrides.pop("default", default)
    return dataclasses.field(default=default, metadata={"option": dataclasses.replace(declared, **overrides)})


def check_option(name: str, value: Any) -> None:
    """Raise AdpruneError when `value` cannot work for method option `name`, saying what to give.
    None passes for an option whose default is None."""
    default, declared = METHOD_OPTIONS[name]
    if value is None and default is None:
        return
    if not declared.allows(value):
        raise AdpruneError(f"{name}={value!r:.60} is not valid: give {declared.expected()}")


NO_OPTIMIZER = (
    "ADPruner has no optimizer: a prune replaces the pruned layers' parameters, so an optimizer built "
    "before it would go on updating tensors the model no longer uses. Pass optimizer=your_optimizer "
    "(it is remapped in place), or build a new optimizer after every prune"
)
