"""One injectable clock for every timer in the gateway.

Production code never calls ``time.monotonic()``, ``time.time()`` or ``asyncio.sleep()`` for
logic timing; it asks a :class:`Clock`. Tests hand in a :class:`FakeClock` and move time with
:meth:`FakeClock.advance`, so a 5-minute escalation runs in milliseconds and cannot flake.

Elapsed time (windows, delays, escalations, expiries) is measured on :meth:`Clock.monotonic`
only. The wall clock may step at any moment (NTP correcting a Raspberry Pi that booted without a
real-time clock), so :meth:`Clock.time` is for labels: timestamps shown to people, sent
upstream or saved, and time-of-day schedules. :meth:`FakeClock.step_wall` lets tests step it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    """Time source and sleeper."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences are meaningful."""
        ...

    def time(self) -> float:
        """Wall-clock epoch seconds, for timestamps shown to people and sent upstream."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of this clock's time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`monotonic` reaches ``deadline``."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


class ScaledClock:
    """Real time running ``speed`` times faster: simulated scenarios and accelerated demos.

    The gateway and the simulators share one instance, so a 30 s on-delay takes 1.5 s of real
    time at ``speed=20`` while everything still happens over real sockets.
    """

    def __init__(self, speed: float = 1.0, *, start_wall: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._real0 = time.monotonic()
        self._wall0 = time.time() if start_wall is None else start_wall

    def monotonic(self) -> float:
        return self._real0 + (time.monotonic() - self._real0) * self.speed

    def time(self) -> float:
        return self._wall0 + (time.monotonic() - self._real0) * self.speed

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay) / self.speed)

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.monotonic()) / self.speed)


class FakeClock:
    """A clock that only moves when a test says so.

    Sleepers are woken in deadline order by :meth:`advance`, which yields to the event loop after
    each wake-up so that the woken task runs (and may schedule further sleeps) before later
    deadlines fire: time moves the way it would in production, only faster. :meth:`step_wall`
    steps the wall clock alone, as an NTP correction does.
    """

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_767_225_600.0) -> None:
        self._now = start
        self._wall_offset = wall_offset - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, delay: float) -> None:
        await self.sleep_until(self._now + max(0.0, delay))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (either way) without moving monotonic time: no
        sleeper wakes, since sleepers wait on monotonic time."""
        self._wall_offset += seconds

    @property
    def pending(self) -> int:
        """Number of sleepers still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way."""
        target = self._now + seconds
        while True:
            await _settle()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            fut.set_result(None)
        self._now = target
        await _settle()


async def _settle(rounds: int = 5) -> None:
    """Let ready tasks run; several rounds because a woken task may wake another."""
    for _ in range(rounds):
        await asyncio.sleep(0)
