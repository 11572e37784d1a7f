"""Fan-out of readings from drivers to the stages that consume them.

Back-pressure is decided per subscriber, on purpose:

* ``block`` (alarms): a full queue makes :meth:`Bus.publish` wait, which slows the drivers down.
  Losing a reading could hide a life-safety condition, so alarms never drop.
* ``drop-oldest`` (telemetry, live console feed): a full queue sheds its oldest reading and
  counts it; the first drop is logged at WARNING, later ones only counted.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.model import Reading

__all__ = ["Bus", "Overflow", "Subscription"]

log = logging.getLogger(__name__)


class Overflow(enum.StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"


@dataclass(eq=False)
class Subscription:
    """One consumer's bounded queue of readings."""

    name: str
    overflow: Overflow
    queue: asyncio.Queue[Reading]
    dropped: int = 0
    delivered: int = 0
    _closed: bool = field(default=False, repr=False)

    async def get(self) -> Reading:
        reading = await self.queue.get()
        self.queue.task_done()  # so queue.join() means "the consumer has taken everything"
        self.delivered += 1
        return reading

    def get_nowait(self) -> Reading | None:
        """The next queued reading, or ``None`` when the queue is empty (never waits)."""
        try:
            reading = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        self.queue.task_done()
        self.delivered += 1
        return reading

    async def __aiter__(self) -> AsyncIterator[Reading]:
        while True:
            yield await self.get()


class Bus:
    """Publishes each reading to every subscription."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.published = 0

    def subscribe(self, name: str, *, maxsize: int = 1000,
                  overflow: Overflow = Overflow.BLOCK) -> Subscription:
        """Add a consumer; ``maxsize`` bounds its queue (must be > 0)."""
        if maxsize <= 0:
            raise ValueError(f"subscription {name!r}: maxsize must be > 0, got {maxsize}")
        sub = Subscription(name, overflow, asyncio.Queue(maxsize))
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    async def publish(self, reading: Reading) -> None:
        """Deliver to every subscriber, waiting only on ``block`` subscribers that are full."""
        self.published += 1
        for sub in self._subs:
            if sub.overflow is Overflow.BLOCK:
                await sub.queue.put(reading)
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.queue.task_done()  # taken by us, never by the consumer: keep join() true
                sub.dropped += 1
                if sub.dropped == 1:
                    log.warning("bus: subscriber %s is not keeping up; dropping oldest readings "
                                "(counted in metrics, logged once)", sub.name)
            sub.queue.put_nowait(reading)
