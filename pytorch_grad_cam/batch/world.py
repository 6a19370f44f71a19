"""The processes of a run: torchrun's gloo process group (work lists and counts only), and the device.

Without ``torchrun`` (no ``WORLD_SIZE``) a run is one process and nothing here talks to another.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
from torch import nn

from pytorch_grad_cam.errors import ConfigError

#: How long a process waits for the others at the end (the slowest process's remaining work).
GROUP_TIMEOUT = datetime.timedelta(hours=24)


@dataclasses.dataclass
class World:
    """This process's place among the processes of a run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    group: Any = None
    owns_default_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier(group=self.group)

    def broadcast(self, value: Any) -> Any:
        """Process 0's ``value``, on every process."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def reduce(self, values: list[float], op: str) -> list[float]:
        """Element-wise sum (``op="sum"``) or max over the processes."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        reduce_op = torch.distributed.ReduceOp.SUM if op == "sum" else torch.distributed.ReduceOp.MAX
        torch.distributed.all_reduce(tensor, op=reduce_op, group=self.group)
        return tensor.tolist()

    def close(self) -> None:
        if self.owns_default_group:
            torch.distributed.destroy_process_group()
        elif self.group is not None:
            torch.distributed.destroy_process_group(self.group)


def join_world() -> World:
    """Join the run's processes: torchrun's environment, or an already initialised process group."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() == 1:
            return World()
        group = dist.new_group(backend="gloo", timeout=GROUP_TIMEOUT)
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return World(dist.get_rank(), dist.get_world_size(), local_rank, group)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    dist.init_process_group(backend="gloo", timeout=GROUP_TIMEOUT)
    return World(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", "0")), None, True)


def resolve_device(device: torch.device | str | None, model: nn.Module, world: World) -> torch.device:
    if device is None:
        if world.distributed and torch.cuda.is_available():
            return torch.device("cuda", world.local_rank)
        parameter = next(iter(model.parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank if world.distributed else torch.cuda.current_device())
    return device
