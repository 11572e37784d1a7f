"""The fake clock wakes sleepers in deadline order and only when advanced."""

from __future__ import annotations

import asyncio

from gateway.clock import FakeClock


async def test_sleepers_wake_in_order_only_when_time_moves(fake_clock: FakeClock) -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await fake_clock.sleep(delay)
        woke.append((name, fake_clock.monotonic()))

    start = fake_clock.monotonic()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("late", 300))
        tg.create_task(sleeper("early", 5))
        await fake_clock.advance(4.9)
        assert woke == []
        await fake_clock.advance(0.1)
        assert woke == [("early", start + 5)]
        await fake_clock.advance(600)
    assert woke == [("early", start + 5), ("late", start + 300)]
    assert fake_clock.monotonic() == start + 605.0


async def test_chained_sleeps_fire_within_one_advance(fake_clock: FakeClock) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(10):
            await fake_clock.sleep(60)
            ticks.append(fake_clock.monotonic())

    start = fake_clock.monotonic()
    task = asyncio.create_task(ticker())
    await fake_clock.advance(600)
    await task
    assert ticks == [start + 60 * i for i in range(1, 11)]


def test_wall_time_moves_with_monotonic() -> None:
    clock = FakeClock(start=10.0, wall_offset=1_800_000_000.0)
    assert clock.time() == 1_800_000_000.0


async def test_scaled_clock_runs_faster_than_real_time() -> None:
    from gateway.clock import ScaledClock, SystemClock

    real = SystemClock()
    clock = ScaledClock(speed=50)
    r0, s0 = real.monotonic(), clock.monotonic()
    await clock.sleep(5)  # 0.1 s of real time
    real_elapsed, scaled_elapsed = real.monotonic() - r0, clock.monotonic() - s0
    assert real_elapsed < 1.0
    assert scaled_elapsed >= 5.0
    assert abs(scaled_elapsed - real_elapsed * 50) < 0.5


async def test_a_wall_step_moves_neither_monotonic_time_nor_sleepers(
        fake_clock: FakeClock) -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await fake_clock.sleep(60)
        woke.append(fake_clock.monotonic())

    mono, wall = fake_clock.monotonic(), fake_clock.time()
    task = asyncio.create_task(sleeper())
    await fake_clock.advance(0)
    fake_clock.step_wall(3600)
    assert (fake_clock.monotonic(), fake_clock.time()) == (mono, wall + 3600)
    await fake_clock.advance(0)
    assert woke == [], "a forward step is not elapsed time"
    fake_clock.step_wall(-7200)
    assert fake_clock.time() == wall - 3600
    await fake_clock.advance(60)
    await task
    assert woke == [mono + 60]
    assert fake_clock.time() == wall - 3600 + 60, "the wall clock goes on from where it was set"
