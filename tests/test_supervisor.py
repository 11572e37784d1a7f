"""The supervisor restarts a failing stage with backoff and never lets it take others down."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.backoff import Backoff
from gateway.clock import FakeClock
from gateway.supervisor import supervise


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
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.0)
    async with asyncio.TaskGroup() as tg:
        bad = tg.create_task(supervise("flaky", flaky, fake_clock, backoff=backoff))
        good = tg.create_task(supervise("healthy", healthy, fake_clock))
        await fake_clock.advance(30)
        bad.cancel()
        good.cancel()
    t0 = starts[0]
    assert [round(s - t0) for s in starts] == [0, 1, 3, 7, 15, 23]
    assert healthy_ticks == 30
    assert "flaky crashed" in caplog.text and "RuntimeError: driver bug" in caplog.text
