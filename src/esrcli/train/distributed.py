"""Distributed set-up for ``torchrun``: process group, rank, device; rank 0 writes files.

``torchrun --nproc-per-node N -m esrcli train-net cfg.toml`` sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from esrcli.errors import TrainingError

__all__ = ["DistInfo", "setup_distributed", "cleanup_distributed", "barrier", "select_device"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def select_device(name: str, dist_info: DistInfo) -> torch.device:
    """The training device: ``"auto"`` picks CUDA (``cuda:LOCAL_RANK``) when available, else CPU.

    Raises:
        TrainingError: CUDA asked for where torch sees none, or a GPU index that does not exist.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"train.device: {name!r} requested but CUDA is not available (torch sees no CUDA GPU)")
        if name == "cuda":
            name = f"cuda:{dist_info.local_rank}"
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise TrainingError(f"train.device: {name!r} does not exist ({torch.cuda.device_count()} GPU(s) visible)")
    return torch.device(name)


def setup_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE > 1``), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
