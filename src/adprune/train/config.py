"""Every option of a training run, declared once: its type, default, help text, choices and bounds.

`TrainConfig` is the single source: `adprune train`'s flags are generated from its fields
(`adprune.cli.train`), a `config.json` read back is type-checked against its annotations
(`config_file.validate_config`), and `TrainConfig.validate` checks choices and bounds from the same
declarations. Free of torch, so the command line can check options before importing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import AdpruneError
from ..limits import MAX_IMAGE_SIZE, MAX_WIDTH_MULTIPLIER
from ..prune.options import MAX_EPOCHS, Option, method_field

OPTIMIZERS = ("sgd", "adam", "adamw")
PRUNE_CHOICES = ("adp", "none")
MAX_LR = 100.0
PARSERS = ("epochs", "names", "json")
LAYOUTS = ("auto", "channels-last", "contiguous")
WEIGHT_IMPORTANCES = ("l1", "bn_scale")  # importances read from the weights alone, no densities
ACCURACY_BUDGET = 1.0
"""The self-sizing rule's default accuracy budget (--max-drop), in points of validation accuracy."""
AUTO_VALIDATION = (1_000, 10, 100, 5_000)
"""The self-sizing rule's own validation split: none below this many training images, else this
fraction's reciprocal of them, at least and at most these many."""


def option(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A `TrainConfig` field with its `Option` declaration (keyword arguments of `Option`). The
    method's own options come from `prune.options.METHOD_OPTIONS` instead (`method_field`)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"option": Option(**spec)})


def flag_of(field: dataclasses.Field) -> str:
    """The command-line flag of a `TrainConfig` field."""
    return field.metadata["option"].flag or "--" + field.name.replace("_", "-")


@dataclass
class TrainConfig:
    """Every option of a training run; written resolved to `config.json`."""

    out: str = option(help="run directory to create (required unless --resume)")
    model: str = option(
        "vgg11",
        help="vgg11|vgg13|vgg16|vgg19|resnet18|resnet34, tv:NAME for a torchvision classification "
        "model (e.g. tv:resnet50), or timm:NAME for a timm model (e.g. timm:resnet18d; needs adprune[timm])",
    )
    width: float = option(
        1.0, help="channel multiplier for our VGG/ResNet", low=0, high=MAX_WIDTH_MULTIPLIER, low_open=True
    )
    dataset: str = option(
        "fashion-mnist", help="fashion-mnist|mnist|cifar10|cifar100|tinyimagenet|imagefolder"
    )
    data_dir: str | None = option(
        None, help="folder holding the dataset (default: known places, then ~/.cache/adprune)"
    )
    download: bool = option(False, help="download the dataset with torchvision if it is missing")
    subset: int | None = option(None, help="train on the first N training samples only (quick runs)", low=1)
    image_size: int | None = option(
        None, help="image side for --dataset imagefolder", low=1, high=MAX_IMAGE_SIZE
    )
    epochs: int = option(10, help="training budget in epochs", low=1, high=MAX_EPOCHS)
    batch_size: int = option(128, help="training batch size (BatchNorm needs two samples)", low=2)
    eval_batch_size: int = option(1000, help="evaluation batch size", low=1)
    eval_every: int = option(
        1, help="evaluate the test set every N epochs; the final epoch always is", low=1, high=MAX_EPOCHS
    )
    eval_subset: int | None = option(
        None, help="evaluate on the first N test images only, except at the final epoch (the full set)", low=1
    )
    lr: float = option(
        0.05, help="peak learning rate, cosine-annealed to 0", low=0, high=MAX_LR, low_open=True
    )
    optimizer: str = option(
        "sgd",
        help="sgd (Nesterov momentum), adam (L2 coupled into the gradient, as torch.optim.Adam) or adamw "
        "(decoupled weight decay)",
        choices=OPTIMIZERS,
    )
    momentum: float = option(0.9, help="SGD momentum", low=0, high=1)
    weight_decay: float = option(
        5e-4, help="weight decay on weights, not on biases or norm scales", low=0, high=1
    )
    label_smoothing: float = option(0.0, help="cross-entropy label smoothing", low=0, high=1)
    prune: str = option(
        "adp",
        help="adp: activation-density pruning; none: dense baseline, densities still measured",
        choices=PRUNE_CHOICES,
    )
    prune_at: list[int] | None = option(
        None,
        help="comma-separated epochs after which to prune, e.g. 3,6; default: when the densities converge "
        "(--tol, --patience)",
        parser="epochs",
    )
    trigger: str = method_field("trigger")
    tol: float | None = method_field("tol")
    patience: int = method_field("patience")
    min_channels: int = method_field("min_channels")
    round_to: int | None = method_field(
        "round_to",
        default=None,
        help="round widths up to a multiple of this (default: what the device runs fastest, 8)",
    )
    max_prunes: int | None = method_field("max_prunes")
    min_reduction: float = method_field("min_reduction")
    fade: float = method_field("fade")
    bn_recalibrate: int = method_field("bn_recalibrate")
    rewarm: float = option(
        0.0,
        help="after each prune, ramp the learning rate up linearly from 0 over this share of the next "
        "epoch (with --fade: the epoch its channels fade out in; 0: no ramp)",
        low=0,
        high=1,
    )
    val_split: int | None = option(
        None,
        help="hold out this many training images as a validation split, never trained on, for the "
        "decisions taken during training (--max-drop); the test set is never read for them (default: "
        "under the self-sizing rule a tenth of the training images, 100 to 5,000; none below 1,000 "
        "training images; otherwise none)",
        low=0,
    )
    max_drop: float | None = option(
        None,
        help="the accuracy budget: when a prune costs more than this many points of validation accuracy "
        "(after --guard-epochs epochs of recovery, against where the unpruned network was heading), roll "
        f"back to the checkpoint before it and stop pruning (default: {ACCURACY_BUDGET} under the "
        "self-sizing rule with a validation split; otherwise no guard)",
        low=0,
        high=100,
    )
    guard_epochs: int = option(
        2,
        help="epochs of training the pruned network whose mean validation accuracy the guard compares "
        "with where the unpruned network was heading",
        low=1,
        high=MAX_EPOCHS,
    )
    density_every: int = method_field("density_every")
    mode: str = method_field("mode")
    ignore: list[str] = option(
        factory=list, help="comma-separated module names whose output width is kept", parser="names"
    )
    importance: str = method_field("importance")
    width_schedule: dict[str, dict[str, int]] | None = option(
        None,
        help='JSON {"epoch": {"group": width}}: prune to these widths after these epochs instead of the plan',
        metavar="FILE",
        parser="json",
    )
    target_params: int | None = method_field("target_params")
    initial_widths: dict[str, int] | None = option(
        None,
        help='JSON {"group": width}: start from the network shrunk to these widths (first channels kept)',
        metavar="FILE",
        parser="json",
    )
    start_from: str | None = option(
        None,
        help="a finished run directory: start from its final model (widths and weights) instead of a fresh "
        "one and count its training cost (FLOPs, wall seconds, energy) into this run's totals; with "
        "--initial-widths the channels kept are chosen by --importance l1 or bn_scale (fine-tuning after "
        "training and pruning)",
        metavar="RUN_DIR",
    )
    bn_l1: float = option(
        0.0,
        help="L1 penalty on BatchNorm scales until the first prune (Network Slimming; e.g. 1e-4)",
        low=0,
        high=1,
    )
    seed: int = option(0, help="random seed", low=0, high=2**63 - 1)
    device: str = option("auto", help="auto|cpu|cuda|cuda:N")
    overwrite: bool = option(False, help="reuse a non-empty --out, replacing an earlier run's files")
    progress: bool = option(True, help="no progress bar", flag="--no-progress")
    report: bool = option(True, help="do not write report/report.html at the end", flag="--no-report")
    tensorboard: bool = option(False, help="also log to RUN_DIR/tensorboard (needs the tensorboard package)")
    layout: str = option(
        "auto",
        help="memory layout of activations and weights (auto: what the device runs fastest, channels-last)",
        choices=LAYOUTS,
    )
    compile: bool = option(
        False, help="compile the training model with torch.compile (again after each prune)"
    )

    def validate(self) -> None:
        """Raise AdpruneError with a fix for the first option that cannot work.

        Every option is checked against its declared choices and bounds, in declaration order; the
        bounds include sanity limits that catch typos and damaged config files before anything is
        allocated (--epochs <= 100,000, --width <= 64, --image-size <= 4096, --lr <= 100). Then the
        options that depend on each other are checked.
        """
        for field in dataclasses.fields(self):
            spec, value = field.metadata["option"], getattr(self, field.name)
            if spec.choices is not None and value not in spec.choices:
                raise AdpruneError(
                    f"{flag_of(field)} must be one of {', '.join(spec.choices)}, got {value!r}"
                )
            if spec.low is None or value is None:
                continue
            above = spec.low < value if spec.low_open else spec.low <= value
            if not (above and value <= spec.high):  # NaN fails too
                raise AdpruneError(f"{flag_of(field)} must be {spec.range_text()}, got {value}")
        for epoch in self.prune_at or []:
            if not 1 <= epoch < self.epochs:
                raise AdpruneError(
                    f"--prune-at {epoch} is outside 1..{self.epochs - 1}: a prune must leave at least one "
                    f"epoch of the --epochs {self.epochs} budget to train the pruned network"
                )
        if self.prune_at and self.prune == "none":
            raise AdpruneError("--prune-at needs --prune adp")
        no_split = self.val_split == 0 or (self.val_split is None and not self.self_sizing)
        if self.max_drop is not None and no_split:
            raise AdpruneError(
                "--max-drop compares validation accuracy: hold out a validation split with --val-split N"
            )
        self._validate_widths()

    @property
    def self_sizing(self) -> bool:
        """True when the run sizes itself (the method's default): ADP without --max-prunes, --prune-at,
        a width schedule or --target-params."""
        return (
            self.prune == "adp" and self.max_prunes is None and self.prune_at is None
            and self.width_schedule is None and self.target_params is None
        )  # fmt: skip

    def validation_images(self, training_images: int) -> int:
        """The validation split's size for a training set (or --subset) of `training_images`:
        --val-split when given; under the self-sizing rule a tenth of them between 100 and 5,000, or
        none below 1,000; otherwise none."""
        if self.val_split is not None:
            return self.val_split
        smallest_set, share, low, high = AUTO_VALIDATION
        if not self.self_sizing or training_images < smallest_set:
            return 0
        return min(high, max(low, training_images // share))

    def accuracy_budget(self, validation_images: int) -> float | None:
        """The accuracy guard's budget in points (None: no guard) for a run with that many validation
        images: --max-drop when given, else `ACCURACY_BUDGET` under the self-sizing rule. Raises
        AdpruneError for --max-drop without validation images to compare on."""
        if self.max_drop is not None:
            if validation_images == 0:
                raise AdpruneError(
                    "--max-drop compares validation accuracy, but no validation split is held out (the "
                    "self-sizing rule holds none out of fewer than 1,000 training images): give --val-split N"
                )
            return self.max_drop
        return ACCURACY_BUDGET if self.self_sizing and validation_images > 0 else None

    def _validate_widths(self) -> None:
        if self.prune == "none" and (self.width_schedule is not None or self.target_params is not None):
            raise AdpruneError("a width schedule or --target-params needs --prune adp")
        if self.width_schedule is not None and self.target_params is not None:
            raise AdpruneError("give a width schedule or --target-params, not both")
        for epoch, widths in (self.width_schedule or {}).items():
            if not (epoch.isdigit() and 1 <= int(epoch) < self.epochs):
                raise AdpruneError(
                    f"width schedule epoch {epoch!r} is not an epoch in 1..{self.epochs - 1}: key each "
                    "widths mapping by the epoch after which to prune"
                )
            self._check_widths(f"width schedule epoch {epoch}", widths)
        self._check_widths("initial widths", self.initial_widths or {})
        if self.start_from is not None and self.initial_widths and self.importance not in WEIGHT_IMPORTANCES:
            raise AdpruneError(
                f"--initial-widths with --start-from chooses the channels a trained model keeps by its "
                f"weights: give --importance {' or '.join(WEIGHT_IMPORTANCES)} (got {self.importance})"
            )

    @staticmethod
    def _check_widths(what: str, widths: dict[str, int]) -> None:
        for name, width in widths.items():
            if not 1 <= width <= 2**31:
                raise AdpruneError(f"{what}: width {width} for '{name}' must be a positive channel count")
