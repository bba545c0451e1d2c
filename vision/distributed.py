"""Processes under torchrun: the process group (NCCL on CUDA, gloo on the CPU), devices and collectives.

One home for training (:mod:`vision.training`) and evaluation (:mod:`vision.eval.sharded`). With one process
(no torchrun, or ``--nproc_per_node 1``) every helper is a no-op that returns its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place among the torchrun processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Whether this process prints and writes: rank 0 of the process group, or the only process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def teardown_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, ctx: Dist, what: str = "run.device") -> torch.device:
    """``auto`` / ``cuda`` / ``cpu`` -> this process's device (its local GPU under torchrun); ``what`` names the
    setting in errors."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    if name != "cpu":
        raise ValueError(f"{what} must be auto, cuda or cpu, got {name!r}")
    return torch.device("cpu")


def all_reduce_sum(values: list[float], ctx: Dist, device: torch.device) -> list[float]:
    """Element-wise sums over all processes (float64); the values themselves for one process."""
    if ctx.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(value: Any, ctx: Dist) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` for one process."""
    if ctx.world_size == 1:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def any_process(flag: bool, ctx: Dist, device: torch.device) -> bool:
    """Whether ``flag`` is true in at least one process (every process gets the same answer)."""
    return all_reduce_sum([float(flag)], ctx, device)[0] > 0


def barrier(ctx: Dist) -> None:
    """Wait for every process (nothing to wait for with one)."""
    if ctx.world_size > 1:
        dist.barrier()
