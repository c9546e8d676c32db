"""Multi-process training through `torchrun`: who this process is, and the few collectives we need.

Every rank holds the whole dataset and walks the same global batch order; each takes the slice
`batch[rank::world_size]` of every batch, so together they see exactly the batches a single process
would. Gradients are averaged by DistributedDataParallel, density counts and metric sums are summed
with all-reduce, and every rank applies the same prune to its own copy of the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import AdpruneError


@dataclass(frozen=True)
class DistContext:
    """This process's rank, the number of processes and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the one rank that writes files and prints."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch."""
        return batch if self.world_size == 1 else batch[self.rank :: self.world_size]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over all ranks (in place), or unchanged in a single process."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor`'s element-wise maximum over all ranks (in place), or unchanged in a single process."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def all_ok(self, ok: bool) -> bool:
        """True when `ok` holds on every rank."""
        flag = torch.tensor([int(ok)], device=self.device if self.device.type == "cuda" else "cpu")
        if self.world_size > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def agree(self, tensor: torch.Tensor) -> bool:
        """True when `tensor` is bit-for-bit the same on every rank."""
        if self.world_size == 1:
            return True
        low, high = tensor.clone(), tensor.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(torch.equal(low, high))

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` wrapped in DistributedDataParallel when there are several ranks."""
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group `torchrun` describes in the environment, or run as a single process.

    Under torchrun each rank trains on `cuda:LOCAL_RANK` when `device` is CUDA (NCCL), else on the
    CPU (gloo).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(0, 1, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise AdpruneError(f"LOCAL_RANK {local_rank} has no CUDA device: start fewer processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, device)


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; otherwise 'cpu' or an existing 'cuda[:N]'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise AdpruneError(f"--device {name!r} is not a device adprune trains on: use auto, cpu or cuda[:N]")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise AdpruneError(
            f"--device {name} asked for CUDA device {device.index or 0} but {count} are available: "
            "use --device cpu or an existing cuda:N"
        )
    return device
