"""A rule evaluator on its own bus and the fake clock, for tests of what rules detect: the
set-up the rule tests share, so that each test file keeps only how it reads the detections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from gateway.alarms import Detection, LearnedStore, RuleEvaluator
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import GatewayConfig
from gateway.model import Quality, Reading, Value


class RuleRig:
    """One evaluator fed by a bus on the fake clock. ``detections`` lists every raise and
    clear it sent, ``at`` the seconds since the rig was made at which each arrived."""

    def __init__(self, clock: FakeClock, config: GatewayConfig, *,
                 learned: LearnedStore | None = None, save_every: float = 600.0) -> None:
        self.clock = clock
        self.config = config
        self.bus = Bus()
        self.feed = self.bus.subscribe("alarms")
        self.t0 = clock.monotonic()
        self.detections: list[Detection] = []
        self.at: list[float] = []
        self.rules = RuleEvaluator(config, clock, self._sink, tick=1.0, learned=learned,
                                   save_every=save_every)

    async def publish(self, device: str, quality: Quality = Quality.GOOD,
                      **values: Value) -> None:
        """One message of ``device``: all its readings are queued before the evaluator runs;
        a reading of bad quality carries no value."""
        ts = self.clock.time()
        for point, value in values.items():
            await self.bus.publish(Reading(device, point, value if quality is Quality.GOOD
                                           else None, quality, ts))
        await self.clock.advance(0)

    @property
    def changes(self) -> list[tuple[str, bool]]:
        """(alarm id, active) per raise or clear."""
        return [(d.alarm_id, d.active) for d in self.detections]

    @property
    def timed(self) -> list[tuple[bool, float]]:
        """(active, seconds since the rig was made) per raise or clear."""
        return [(d.active, at) for d, at in zip(self.detections, self.at, strict=True)]

    @property
    def states(self) -> list[bool]:
        """Active or not, per raise or clear."""
        return [d.active for d in self.detections]

    async def _sink(self, detection: Detection) -> None:
        self.detections.append(detection)
        self.at.append(round(self.clock.monotonic() - self.t0, 3))


R = TypeVar("R", bound=RuleRig)


class RigRunner:
    """Runs each started rig's evaluator in a task until :func:`running_rigs` ends."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, rig: R) -> R:
        self._tasks.append(asyncio.create_task(rig.rules.run(rig.feed)))
        return rig


@asynccontextmanager
async def running_rigs() -> AsyncIterator[RigRunner]:
    """A runner whose started evaluators are all cancelled and awaited on exit."""
    runner = RigRunner()
    yield runner
    for task in runner._tasks:
        task.cancel()
    await asyncio.gather(*runner._tasks, return_exceptions=True)
