"""Distributed helpers for ``torchrun`` jobs (evaluation, training): one place, a few lines each.

Started without ``torchrun`` (``WORLD_SIZE`` unset or 1) every helper is a no-op for one process, so the
same code runs in a notebook, a script and a multi-process job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def is_distributed() -> bool:
    """True once a process group is up (``torch.distributed`` is only imported if it may be)."""
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """(rank, world size); under ``torchrun`` (``WORLD_SIZE`` > 1) joins the process group first: NCCL when
    CUDA is available, else gloo (or ``backend``). With NCCL each process first takes the GPU ``LOCAL_RANK``, so
    that collectives (``all_gather_object`` too) do not all land on GPU 0."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if not is_distributed():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Round-robin share of one process: items rank, rank + world, ..."""
    return list(items[rank::world])


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` for one process."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    """Wait for every rank, then tear the group down: a rank that exits while another still works kills
    gloo's threads ("terminate called without an active exception")."""
    if is_distributed():
        import torch.distributed as dist

        barrier()
        dist.destroy_process_group()
