"""Several images in flight on the CPU: worker threads that share the process's torch threads.

One image through the network with all of a CPU's threads leaves throughput on the table:
every convolution ends at a barrier across threads, elementwise layers scale worse than
convolutions, and the cores idle while an image is decoded or encoded (one thread each).
Two images at once, each with half the threads, keep the cores busy. Measured on 2 Zen 4
cores in bf16, 256x256 inputs at x4, images/s against one image at a time with 2 threads:
RRDBNet (23 blocks) +6-10% over three rounds, SRVGGNetCompact (64/32) -1% to +8% (+3.7% on
average over nine), same process, alternating; ``esr upscale`` on the nine real images
3-10% faster. The cost is memory: each image in flight holds its own input, output and
activations.

oneDNN and ATen read the OpenMP thread count of the calling thread, and a new thread takes
torch's process-wide count when it first runs an op, so each worker sets its own share
(:func:`torch.set_num_threads` from that thread) and the process-wide count is put back
when the pool closes. When one task is left running and no new one will come soon (the
end of a batch, or the caller waiting for memory to free before it submits the next), that
task takes all the threads at its next :meth:`WorkerPool.rebalance` (a tile boundary),
instead of running alone on its share.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

__all__ = ["default_jobs", "WorkerPool"]

T = TypeVar("T")


def default_jobs(device: torch.device, threads: int | None = None) -> int:
    """Images to process at once by default: 2 on a CPU with at least 2 torch threads, else 1.

    Args:
        device: the inference device (GPUs: 1; their work is queued on one stream anyway,
            and a second image would double the GPU memory).
        threads: torch's CPU threads (default :func:`torch.get_num_threads`).
    """
    if device.type != "cpu":
        return 1
    threads = torch.get_num_threads() if threads is None else threads
    return 2 if threads >= 2 else 1


class WorkerPool:
    """Run tasks on ``jobs`` threads that split torch's CPU threads; a context manager.

    With ``jobs == 1`` :meth:`submit` runs the task at once in the calling thread, with the
    process's thread count untouched. Leaving the block waits for running tasks (pending
    ones are cancelled when the block raises) and restores the process-wide thread count.

    Args:
        jobs: tasks at once (>= 1).

    Raises:
        ValueError: ``jobs < 1``.
    """

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ValueError(f"jobs: must be >= 1, got {jobs}")
        self._total = torch.get_num_threads()
        self._share = max(1, self._total // jobs)
        self._lock = threading.Lock()
        self._active = 0
        self._closing = False
        self._waiting = False
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="esr-worker") if jobs > 1 else None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
            torch.set_num_threads(self._total)

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn(*args)`` on a worker (inline when ``jobs == 1``); its future."""
        if self._pool is not None:
            return self._pool.submit(self._run, fn, *args)
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(exc)
        return fut

    def no_more_work(self) -> None:
        """Say that nothing more will be submitted: a last task left alone may take all threads."""
        with self._lock:
            self._closing = True

    @contextlib.contextmanager
    def waiting_for_room(self) -> Iterator[None]:
        """Say, for the block's duration, that the caller holds back its next task (e.g.
        until memory frees): a task left running alone meanwhile may take all threads."""
        with self._lock:
            self._waiting = True
        try:
            yield
        finally:
            with self._lock:
                self._waiting = False

    def rebalance(self) -> None:
        """From inside a task, between steps: use all threads when it is the only task
        running and no other will start soon (:meth:`no_more_work`, :meth:`waiting_for_room`),
        else the worker's share. No-op outside workers."""
        if not getattr(self._local, "is_worker", False):
            return
        with self._lock:
            alone = self._active == 1 and (self._closing or self._waiting)
            n = self._total if alone else self._share
        if torch.get_num_threads() != n:  # this thread's own OpenMP count
            torch.set_num_threads(n)  # (and torch's default for threads started later)

    def _run(self, fn: Callable[..., T], *args: object) -> T:
        self._local.is_worker = True
        with self._lock:
            self._active += 1
        try:
            self.rebalance()
            return fn(*args)
        finally:
            with self._lock:
                self._active -= 1
