"""Carrying tensors that follow a pruned tensor over to its new shape: optimizer state of any
shape, the weights of a twin, memory layouts.

A prune keeps, along every dim of a parameter (or buffer), some of its indices: the kept elements
are the product of the kept indices of each dim (`KeptIndices`). Any tensor that follows the
parameter dim by dim is sliced the same way:

- one of the same shape (SGD momentum, Adam's moments, an EMA copy of the weights);
- one of the same number of dims, each either the parameter's size or 1 (`torch.optim.Adafactor`'s
  row and column variances, shaped `[..., rows, 1]` and `[..., 1, cols]`);
- one with one dim of the parameter's left out (factored second moments kept as `shape[:-1]` and
  `shape[:-2] + shape[-1:]`); when several dims could be the one left out and they are sliced
  differently, the tensor cannot be mapped;
- a scalar (a step count) is kept as it is.

Any other tensor in an optimizer's state (a full preconditioner matrix) cannot follow a prune: the
optimizer is refused before the model is touched (`check_optimizer_state`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..errors import AdpruneError


@dataclass(frozen=True)
class KeptIndices:
    """The indices a prune kept along each dim of a tensor of shape `old_shape`."""

    old_shape: tuple[int, ...]
    per_dim: tuple[torch.Tensor, ...]

    @property
    def new_shape(self) -> tuple[int, ...]:
        """The shape of the tensor after the prune."""
        return tuple(len(k) for k in self.per_dim)

    @classmethod
    def from_flat(cls, flat: torch.Tensor, old_shape: Sequence[int], new_shape: Sequence[int]) -> KeptIndices:
        """The per-dim indices of a prune that turned a tensor of `old_shape` into one of `new_shape`
        whose element k was the old tensor's element `flat[k]` (row-major). Raises AdpruneError when
        the kept elements are not a product of per-dim indices (no slicing made them)."""
        old_shape, new_shape = tuple(old_shape), tuple(new_shape)
        if old_shape == new_shape:  # not sliced (most tensors at a prune): nothing to read
            return cls(old_shape, tuple(torch.arange(n) for n in old_shape))
        if len(old_shape) != len(new_shape):
            raise AdpruneError(f"a prune turned a {list(old_shape)} tensor into a {list(new_shape)} one")
        flat = flat.detach().long().cpu().view(new_shape)
        strides = [math.prod(old_shape[d + 1 :]) for d in range(len(old_shape))]
        per_dim, product = [], torch.zeros((), dtype=torch.long)
        for d, (size, stride) in enumerate(zip(old_shape, strides, strict=True)):
            line = flat.movedim(d, 0).reshape(new_shape[d], -1)[:, 0]  # along dim d, first of the others
            kept = (line // stride) % size
            per_dim.append(kept)
            product = product + (kept * stride).view([-1 if i == d else 1 for i in range(len(old_shape))])
        if not torch.equal(product, flat):
            raise AdpruneError(
                f"the prune kept elements of a {list(old_shape)} tensor that are not whole rows and columns"
            )
        return cls(old_shape, tuple(per_dim))

    def changed(self) -> bool:
        """Whether the prune removed anything."""
        return self.new_shape != self.old_shape

    def slice(self, value: torch.Tensor, *, like: torch.Tensor | None = None) -> torch.Tensor:
        """`value`, a tensor that follows the pruned one (module docstring), sliced the same way, in
        `like`'s memory layout when given (else `value`'s). Raises AdpruneError for one that cannot
        be mapped."""
        dims = self.mapping(value.shape)
        if dims is None:
            raise AdpruneError(
                f"a tensor of shape {list(value.shape)} does not follow "
                f"the pruned {list(self.old_shape)} tensor"
            )
        out = value
        for axis, dim in enumerate(dims):
            if dim is not None and value.shape[axis] != 1 and self.per_dim[dim].numel() != value.shape[axis]:
                out = out.index_select(axis, self.per_dim[dim].to(value.device))
        return in_layout(out, like if like is not None else value)

    def mapping(self, shape: Sequence[int]) -> tuple[int | None, ...] | None:
        """For each dim of a tensor of `shape`, the dim of the pruned tensor it follows (None for a
        broadcast dim of size 1); None when `shape` does not follow it (module docstring)."""
        shape, old = tuple(shape), self.old_shape
        if math.prod(shape) == 1:
            return tuple(None for _ in shape)
        if len(shape) == len(old) and all(s in (o, 1) for s, o in zip(shape, old, strict=True)):
            return tuple(d if s == old[d] else None for d, s in enumerate(shape))
        if len(shape) == len(old) - 1:
            candidates = [d for d in range(len(old)) if old[:d] + old[d + 1 :] == shape]
            kept = {
                tuple(tuple(k.tolist()) for i, k in enumerate(self.per_dim) if i != d) for d in candidates
            }
            if candidates and len(kept) == 1:
                d = candidates[0]
                return tuple(range(d)) + tuple(range(d + 1, len(old)))
        return None


def in_layout(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`tensor` copied into `like`'s memory layout (channels-last stays channels-last)."""
    for layout, dims in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        if (
            like.dim() == dims == tensor.dim()
            and like.is_contiguous(memory_format=layout)
            and not like.is_contiguous()
        ):
            return tensor.contiguous(memory_format=layout)
    return tensor.contiguous()


def layout_of(tensor: torch.Tensor) -> torch.Tensor:
    """A storage-free stand-in (meta device) with `tensor`'s shape and strides: it remembers the memory
    layout after the tensor itself is replaced."""
    return torch.empty_strided(tensor.shape, tensor.stride(), dtype=torch.bool, device="meta")


def check_optimizer_state(optimizer: torch.optim.Optimizer, names: Mapping[int, str]) -> None:
    """Refuse, before any prune, an optimizer whose state holds a tensor that cannot follow a pruned
    parameter (module docstring). `names` maps `id(parameter)` to its name in the model; parameters
    of other models are not checked. Raises AdpruneError naming the optimizer, the parameter, the
    state entry and what to do."""
    for param, state in optimizer.state.items():
        name = names.get(id(param))
        if name is None:
            continue
        identity = KeptIndices(tuple(param.shape), tuple(torch.arange(n) for n in param.shape))
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0 and identity.mapping(value.shape) is None:
                raise AdpruneError(
                    f"{type(optimizer).__name__}'s state '{key}' of {name} has shape {list(value.shape)}, "
                    f"which does not follow the parameter's shape {list(param.shape)}, so it cannot be "
                    "pruned with it: use an optimizer whose state has the parameters' shapes "
                    "(SGD, Adam, AdamW, Adafactor, ...)"
                )


def sliced_state(state: Mapping[str, object], kept: KeptIndices, new: torch.Tensor) -> dict[str, object]:
    """An optimizer's state of one parameter, every tensor in it sliced as the parameter was (laid out
    as `new` when it has the parameter's shape), the rest kept."""
    return {
        key: kept.slice(value, like=new if tuple(value.shape) == kept.old_shape else None).clone()
        if torch.is_tensor(value) and value.dim() > 0 and kept.changed()
        else value
        for key, value in state.items()
    }
