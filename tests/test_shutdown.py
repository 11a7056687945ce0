"""A service stops even when a background task loses its cancel.

Python 3.11's asyncio.wait_for returns normally when the cancel lands just as
its inner call completes (CPython gh-86296); redis-py sends every command
through it. A worker of `nba serve --workers 2` SIGTERMed a few ms after it
started serving kept its ModelWatcher loop polling and never exited
(tests/test_serve_workers.py::test_workers_die_with_a_killed_supervisor,
about 1 run in 20 on a busy machine)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from decision.models import ModelWatcher
from decision.server import App, Settings, cancel_and_wait


async def _loses_one_cancel(started: asyncio.Event) -> None:
    """A loop whose first cancel gets lost on its way up, as in wait_for."""
    lost = False
    started.set()
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if lost:
                raise
            lost = True


async def _started(coro_of) -> asyncio.Task:
    started = asyncio.Event()
    task = asyncio.create_task(coro_of(started))
    await started.wait()
    return task


async def test_a_cancel_is_sent_again_until_the_task_ends() -> None:
    task = await _started(_loses_one_cancel)
    assert await cancel_and_wait([task], timeout_s=30) == []
    assert task.cancelled()


async def test_a_task_that_will_not_end_is_reported() -> None:
    stop = False

    async def deaf(started: asyncio.Event) -> None:
        started.set()
        while not stop:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass

    task = await _started(deaf)
    try:
        assert await cancel_and_wait([task], timeout_s=0.3) == [task]
        assert not task.done()
    finally:
        stop = True
        await asyncio.wait({task}, timeout=30)


async def test_app_stop_ends_a_background_task_that_lost_its_cancel() -> None:
    app = App(Settings(drain_s=0, grace_s=30))
    task = await _started(_loses_one_cancel)
    app._tasks = [task]
    try:
        await app.stop()
        assert task.cancelled()
    finally:
        task.cancel()  # a second cancel gets through: no task left running after the test, pass or fail


async def test_the_model_watcher_loop_ends_when_its_cancel_was_lost_below_it() -> None:
    watcher = ModelWatcher(None, lambda: None)  # type: ignore[arg-type]
    entered = asyncio.Event()
    rounds = 0

    async def subscribed() -> None:
        nonlocal rounds
        rounds += 1
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if rounds == 1:
                return  # lost: returns as wait_for does when its inner call has completed
            raise

    watcher._run_subscribed = subscribed  # type: ignore[method-assign]
    task = asyncio.create_task(watcher.run())
    await entered.wait()
    task.cancel()
    try:
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled() and rounds == 1
    finally:
        task.cancel()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps the cancel since Python 3.12")
async def test_python_3_11_wait_for_loses_a_cancel_that_lands_as_its_inner_call_completes() -> None:
    """Why the two above are needed: the swallow itself, as redis-py meets it."""
    async def send() -> str:
        return "sent"

    rounds = 0

    async def sender() -> None:
        nonlocal rounds
        while True:
            await asyncio.wait_for(send(), 1.0)
            rounds += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(sender())
    await asyncio.sleep(0)  # sender in wait_for; send's task created
    await asyncio.sleep(0)  # send completed: wait_for's waiter released, sender not resumed yet
    task.cancel()
    await asyncio.sleep(0.05)
    try:
        assert not task.done() and rounds > 1  # the cancel was lost: it goes on
    finally:
        assert await cancel_and_wait([task], timeout_s=30) == []
