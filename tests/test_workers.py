"""WorkerPool: images in flight on worker threads that split torch's CPU threads."""

from __future__ import annotations

import threading

import pytest
import torch

from esrcli.infer.workers import WorkerPool, default_jobs


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield 4
    torch.set_num_threads(before)


def test_default_jobs():
    assert default_jobs(torch.device("cpu"), threads=2) == 2
    assert default_jobs(torch.device("cpu"), threads=16) == 2
    assert default_jobs(torch.device("cpu"), threads=1) == 1
    assert default_jobs(torch.device("cuda"), threads=16) == 1
    with pytest.raises(ValueError, match="jobs: must be >= 1"):
        WorkerPool(0)


def test_one_job_runs_inline_and_leaves_threads_alone(four_threads):
    with WorkerPool(1) as pool:
        fut = pool.submit(lambda: (threading.current_thread(), torch.get_num_threads()))
        assert fut.done() and fut.result() == (threading.current_thread(), 4)
        failed = pool.submit(lambda: 1 / 0)
        assert isinstance(failed.exception(), ZeroDivisionError)
    assert torch.get_num_threads() == 4


def test_workers_split_the_threads_and_the_count_comes_back(four_threads):
    both_in = threading.Barrier(2, timeout=30)

    def task() -> tuple[str, int]:
        both_in.wait()  # two tasks at once: each on its own worker
        x = torch.rand(64, 64)
        (x @ x).sum()  # an op with intra-op parallelism runs under the worker's count
        return threading.current_thread().name, torch.get_num_threads()

    with WorkerPool(2) as pool:
        results = [f.result() for f in [pool.submit(task) for _ in range(2)]]
    assert {n for _, n in results} == {2}
    assert len({name for name, _ in results}) == 2 and all(name.startswith("esr-worker") for name, _ in results)
    assert torch.get_num_threads() == 4


def test_last_task_alone_takes_all_threads_at_its_next_rebalance(four_threads):
    first_done = threading.Event()
    seen: dict[str, list[int]] = {"long": [], "short": []}

    def long_task(pool: WorkerPool) -> None:
        seen["long"].append(torch.get_num_threads())
        first_done.wait(30)
        pool.rebalance()  # the other task ended, but more work may still come: keep the share
        seen["long"].append(torch.get_num_threads())
        pool.no_more_work()
        pool.rebalance()  # now the last one left: all threads
        seen["long"].append(torch.get_num_threads())

    def short_task() -> None:
        seen["short"].append(torch.get_num_threads())

    with WorkerPool(2) as pool:
        a = pool.submit(long_task, pool)
        pool.submit(short_task).result()
        first_done.set()
        a.result()
    assert seen == {"long": [2, 2, 4], "short": [2]}
    assert torch.get_num_threads() == 4


def test_leaving_on_an_error_cancels_pending_tasks(four_threads):
    gate = threading.Event()
    ran: list[int] = []
    opener = threading.Timer(0.5, gate.set)  # the two running tasks finish after the block left
    with pytest.raises(KeyboardInterrupt):
        with WorkerPool(2) as pool:
            futures = [pool.submit(lambda k=k: (gate.wait(30), ran.append(k))) for k in range(6)]
            opener.start()
            raise KeyboardInterrupt
    assert sorted(ran) == [0, 1]  # the running ones finished, the waiting ones never started
    assert [f.cancelled() for f in futures] == [False, False, True, True, True, True]
    assert torch.get_num_threads() == 4


def test_task_alone_while_the_caller_waits_for_room_takes_all_threads(four_threads):
    waiting, resumed = threading.Event(), threading.Event()
    seen: list[int] = []

    def task(pool: WorkerPool) -> None:
        pool.rebalance()
        seen.append(torch.get_num_threads())  # alone, but more work may come: the share
        waiting.wait(30)
        pool.rebalance()
        seen.append(torch.get_num_threads())  # the caller holds back its next task: all
        resumed.wait(30)
        pool.rebalance()
        seen.append(torch.get_num_threads())  # the caller may submit again: the share

    with WorkerPool(2) as pool:
        fut = pool.submit(task, pool)
        with pool.waiting_for_room():
            waiting.set()
            while len(seen) < 2 and not fut.done():
                threading.Event().wait(0.01)
        resumed.set()
        fut.result()
    assert seen == [2, 4, 2]
    assert torch.get_num_threads() == 4
