"""CPU threading helpers for the training loop."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["single_thread_on_cpu", "torch_threads"]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's CPU threads set to ``n`` for the block (0: left as they are), and the caller's
    count put back after it: ``train.threads`` is a run's setting, not the process's for good."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_thread_on_cpu(tensors: list[torch.Tensor]) -> Iterator[None]:
    """Run a burst of small CPU ops (optimiser step, EMA update) on one thread.

    Each op on a tensor above torch's grain size opens an OpenMP parallel region; on a busy
    machine every region waits for a descheduled worker thread. Measured on 2 shared cores
    under load, for the 1.2M parameters of SRVGGNetCompact 64/32: the EMA update took ~250 ms
    on 2 threads against 0.5 ms on one, fused Adam ~1 s against 3 ms. These updates are
    memory-bound, so one thread loses little on an idle machine either. No-op for tensors
    on other devices or when torch already uses one thread.

    Args:
        tensors: the tensors the ops touch (only the first one's device is looked at).
    """
    if not tensors or tensors[0].device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
