"""Several processes on one batch (``torchrun --nproc-per-node N -m esrcli upscale IN OUT``).

torchrun starts N copies of the command with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and a
rendezvous address in the environment. Each process takes every N-th input
(:func:`shard`: rank r gets items r, r+N, r+2N, ... so that sizes mix evenly), runs on its
own device (:func:`rank_device`: ``cuda:LOCAL_RANK`` on a machine with GPUs), and at the end
the counts are summed over the processes (:func:`sum_over_ranks`, gloo) so that rank 0 can
print one summary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from esrcli.errors import ConfigError

__all__ = ["Rank", "rank_from_env", "shard", "rank_device", "sum_over_ranks", "max_over_ranks", "join", "finish"]

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """This process's place in a multi-process run.

    Attributes:
        rank: 0..world_size-1 over all machines.
        local_rank: index on this machine (picks the GPU).
        world_size: number of processes.
    """

    rank: int
    local_rank: int
    world_size: int


def rank_from_env(env: dict[str, str] | None = None) -> Rank | None:
    """The :class:`Rank` from torchrun's environment variables, or ``None`` for a single process.

    Raises:
        ConfigError: ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` that are not integers in range.
    """
    env = dict(os.environ) if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if world <= 1:
        return None
    if not 0 <= rank < world or local < 0:
        raise ConfigError(f"RANK {rank} / LOCAL_RANK {local} out of range for WORLD_SIZE {world}")
    return Rank(rank, local, world)


def shard(items: Sequence[T], rank: Rank | None) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th from ``rank`` (all without a rank)."""
    if rank is None:
        return list(items)
    return list(items[rank.rank :: rank.world_size])


def rank_device(spec: str, rank: Rank | None) -> str:
    """The device spec for this rank: ``auto`` or ``cuda`` become ``cuda:LOCAL_RANK`` when
    torch sees GPUs (wrapping round when there are fewer GPUs than processes); anything else
    is kept."""
    s = spec.strip().lower()
    if rank is not None and s in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{rank.local_rank % torch.cuda.device_count()}"
    return spec


def join(rank: Rank | None) -> None:
    """Join the process group (gloo, torchrun's ``env://`` rendezvous) if not done yet.

    Done at the start of a run, so that the processes meet while nothing waits on them;
    the timeout is a week, as one rank may finish its share hours before another.
    """
    if rank is None:
        return
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))


def sum_over_ranks(values: Sequence[int], rank: Rank | None) -> list[int]:
    """``values`` summed element-wise over all ranks (gloo all-reduce on the CPU); unchanged
    without a rank. Every rank must call it (it waits for the others)."""
    return [int(v) for v in _reduce(values, rank, "sum")]


def max_over_ranks(values: Sequence[float], rank: Rank | None) -> list[float]:
    """``values``' element-wise maximum over all ranks (e.g. the wall time of the slowest);
    unchanged without a rank. Every rank must call it."""
    return [float(v) for v in _reduce(values, rank, "max")]


def _reduce(values: Sequence[float], rank: Rank | None, op: str) -> list[float]:
    if rank is None:
        return list(values)
    import torch.distributed as dist

    join(rank)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def finish(rank: Rank | None) -> None:
    """Leave the process group (if one was joined)."""
    if rank is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
