"""The supervisor restarts a stage whatever ends it, and only a requested stop stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.aio import task_group
from gateway.backoff import Backoff
from gateway.clock import FakeClock
from gateway.supervisor import Supervisor


async def test_crashing_stage_is_restarted_with_growing_delays(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(fake_clock.monotonic())
        raise RuntimeError("driver bug")

    healthy_ticks = 0

    async def healthy() -> None:
        nonlocal healthy_ticks
        while True:
            await fake_clock.sleep(1)
            healthy_ticks += 1

    caplog.set_level(logging.WARNING)
    sup = Supervisor(fake_clock)
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.0)
    async with asyncio.TaskGroup() as tg:
        bad = tg.create_task(sup.run("flaky", flaky, backoff=backoff))
        good = tg.create_task(sup.run("healthy", healthy))
        await fake_clock.advance(30)
        sup.stop()
        bad.cancel()
        good.cancel()
    t0 = starts[0]
    assert [round(s - t0) for s in starts] == [0, 1, 3, 7, 15, 23]
    assert healthy_ticks == 30
    assert "stage flaky crashed" in caplog.text and "RuntimeError: driver bug" in caplog.text
    flaky_status, healthy_status = sup.stages()
    assert flaky_status.restarts == 6 and flaky_status.state == "stopped"
    assert flaky_status.last_problem == "crashed: RuntimeError: driver bug"
    assert healthy_status.restarts == 0


async def test_a_stage_that_returns_is_restarted(fake_clock: FakeClock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    sup = Supervisor(fake_clock)
    task = asyncio.create_task(sup.run("quits", returns,
                                       backoff=Backoff(base=1.0, cap=1.0, jitter=0.0)))
    await fake_clock.advance(3.5)
    sup.stop()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 4
    assert "stage quits returned although it should run" in caplog.text


async def test_a_stage_ending_cancelled_without_a_stop_is_restarted_not_dropped(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The silent death of the fault drill: a stage raising CancelledError by itself (a stale
    cancellation request) used to end its supervisor quietly."""
    runs = 0
    alive = asyncio.Event()

    async def cancels_itself() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # the stale request a 3.11 TaskGroup leaves behind
            await asyncio.sleep(0)
        alive.set()
        await asyncio.Event().wait()

    sup = Supervisor(fake_clock)
    task = asyncio.create_task(sup.run("upstream", cancels_itself, critical=True,
                                       backoff=Backoff(base=1.0, cap=1.0, jitter=0.0)))
    await fake_clock.advance(2)
    assert alive.is_set() and runs == 2 and not task.done()
    (status,) = sup.stages()
    # As one tuple: narrowing status.state to "running" would hide the "stopped" check below.
    assert (status.state, status.restarts) == ("running", 1)
    assert status.last_problem == "ended cancelled although nobody stopped it"
    assert task.cancelling() == 0, "the stale request was taken back"
    assert "stage upstream ended cancelled although nobody stopped it" in caplog.text
    sup.stop()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert status.state == "stopped"


async def test_task_group_takes_back_the_cancellation_a_failed_child_left() -> None:
    """Python 3.11: a child failing after the body has finished leaves the parent cancelling;
    the next timeout then fires at once. gateway.aio.task_group() balances the count."""

    async def fails_soon() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("link lost")

    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(ExceptionGroup):
        async with task_group() as tg:
            tg.create_task(fails_soon())
    assert task.cancelling() == 0
    async with asyncio.timeout(1):  # would raise TimeoutError at once if still cancelling
        await asyncio.sleep(0.01)


async def test_task_group_still_propagates_a_real_cancellation() -> None:
    started = asyncio.Event()

    async def body() -> None:
        async with task_group() as tg:
            tg.create_task(asyncio.Event().wait())
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
