"""Several training processes (``torchrun``): the process group, and what only rank 0 does.

``torchrun --nproc_per_node N -m deblurkit train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``; :func:`setup` joins the group (NCCL on CUDA,
gloo on CPU) and pins each process to its local GPU. Without those variables everything is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ..errors import DeblurkitError
from ..inference.device import resolve_device

__all__ = ["Context", "setup"]


@dataclass(frozen=True)
class Context:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """True on the process that logs, validates and writes (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes train together."""
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self._comm_device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (a one-element list alone)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def close(self) -> None:
        """Leave the process group."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise DeblurkitError(f"{name} must be an integer, got {os.environ[name]!r}") from None


def setup(device: str = "auto") -> Context:
    """Join the ``torchrun`` process group if there is one; the device this process trains on."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return Context(device=resolve_device(device))
    if device in ("auto", "cuda") and torch.cuda.is_available():
        chosen = torch.device(f"cuda:{local % torch.cuda.device_count()}")
        torch.cuda.set_device(chosen)
    else:
        chosen = resolve_device("cpu" if device == "auto" else device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if chosen.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=60)
        )
    return Context(rank, world, local, chosen)
