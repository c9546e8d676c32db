"""The cut: what removes a prune's channels from the model and from everything that follows it (the
optimizer's state, the twins), after checking on a copy that the model survives it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from .groups import ChannelGroup
from .modes import uncompiled
from .remap import check_optimizer_state
from .surgery import Cut, prune_groups
from .trial import find_unprunable
from .twins import check_in_step, mirror_of, prune_twin


class Surgeon:
    """Cuts channels out of `model` and carries the cut over to `optimizer` and to every twin.

    With `check`, the exact channels of each cut are first removed from a deep copy
    (`trial.find_unprunable`); a group whose cut breaks the copy keeps its width, with a warning.
    `mode` is `inherit` (kept channels keep their weights and optimizer state) or `reinit`
    (`surgery.reinitialise` with `init`).
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        optimizer: torch.optim.Optimizer | None,
        *,
        mode: str,
        init: Callable[[nn.Module], None] | None,
        ignore: Sequence[nn.Module],
        check: bool,
    ) -> None:
        self.model = model
        self.example_input = example_input
        self.mode = mode
        self.init = init
        self.ignore = ignore
        self.check = check
        self.twins: list[nn.Module] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.set_optimizer(optimizer)

    def set_optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Make `optimizer` the one the cuts carry over to; AdpruneError when its state could not follow
        a prune (`remap.check_optimizer_state`)."""
        self.optimizer = optimizer
        self.check_ready()

    def add_twin(self, twin: nn.Module) -> None:
        """Cut `twin`'s copy of the model with the model from now on (`twins.mirror_of`); a twin that is
        the model itself (a compiled wrapper of it) or already registered changes nothing."""
        mirror = mirror_of(uncompiled(twin), self.model)
        if mirror is not self.model and all(mirror is not t for t in self.twins):
            self.twins.append(mirror)

    def unprunable(
        self, groups: Sequence[ChannelGroup], removal: Mapping[str, list[int]] | None = None
    ) -> dict[str, str]:
        """With `check`, the groups whose removal (`removal`, by default one channel each) breaks a
        copy of the model, with why (`trial.find_unprunable`); without, none."""
        if not self.check:
            return {}
        names = {module: name for name, module in self.model.named_modules()}
        ignore = [names[m] for m in self.ignore if m in names]
        return find_unprunable(self.model, self.example_input, groups, ignore, removal=removal)

    def check_ready(self) -> None:
        """Raise AdpruneError when a cut could not follow through: a twin that no longer mirrors the
        model, or optimizer state that cannot be sliced (`remap.check_optimizer_state`)."""
        for mirror in self.twins:
            check_in_step(mirror, self.model)
        if self.optimizer is not None and self.mode != "reinit":
            check_optimizer_state(self.optimizer, {id(p): n for n, p in self.model.named_parameters()})

    def cut(
        self, graph: tp.DependencyGraph, groups: list[ChannelGroup], remove: Mapping[str, list[int]]
    ) -> tuple[Cut, dict[str, str]]:
        """Remove channels `remove[group name]` from the model, the optimizer state and every twin, in
        place; the `Cut`, and the groups refused because their cut would break the model (with why).
        Raises AdpruneError before anything changes when a twin no longer mirrors the model or the
        optimizer's state cannot follow the prune."""
        self.check_ready()
        refused = self.unprunable(groups, remove)
        for name, reason in refused.items():
            warnings.warn(f"channel group {name} keeps its width: {reason}", stacklevel=5)
        remove = {name: channels for name, channels in remove.items() if name not in refused}
        cut = prune_groups(
            self.model, graph, groups, remove, self.optimizer, reinit=self.mode == "reinit", init=self.init
        )
        for mirror in self.twins:
            prune_twin(mirror, cut)
        return cut, refused
