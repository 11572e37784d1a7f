"""Fan-out of readings from drivers to the stages that consume them.

A driver publishes the readings of one message or one poll block together, as one *batch*: one
bus operation per batch, not per reading, so a JSON message of four points costs one queue
append per subscriber instead of four. Consumers take readings one at a time
(:meth:`Subscription.get`) or a batch at a time (:meth:`Subscription.get_batch`: one call and
at most one wake-up per batch, which is what a busy consumer wants); bounds and counters are in
readings either way.

Back-pressure is decided per subscriber, on purpose:

* ``block`` (alarms): a full queue makes :meth:`Bus.publish` wait, which slows the drivers down.
  Losing a reading could hide a life-safety condition, so alarms never drop.
* ``drop-oldest`` (telemetry, live console feed): a full queue sheds its oldest readings and
  counts them; the first drop is logged at WARNING, later ones only counted.

A consumer that only updates in-memory state (the console's last readings) can instead be a
:class:`Tap`: the bus calls it with each batch, inline, once every queue has taken the batch.
No queue, no task, no wake-up per message: at a quiet 1,000 messages/s that wake-up costs
more than the work. The trade-off: a tap runs in the publisher's (the driver's) time, so it
must be quick (O(readings) dictionary updates) and never wait; its memory bound is its own (a
tap keeps no backlog); and a tap that raises is isolated by the bus, which logs the first
failure with its traceback, counts every one, and carries on delivering.

Urgent batches (from the life-safety lane of an MQTT broker) overtake the routine ones queued
for a ``block`` subscriber: the alarm engine takes them next, and a full queue of telemetry
readings never makes them wait, since they have a bound of their own (``maxsize`` readings
again). Order is kept within each kind.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from gateway.model import Reading

__all__ = ["Bus", "Overflow", "ReadingQueue", "Subscription", "Tap"]

log = logging.getLogger(__name__)

_NO_READINGS: tuple[Reading, ...] = ()


class Overflow(enum.StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"


class ReadingQueue:
    """A subscriber's bounded queue of batches, counted in readings.

    ``maxsize`` bounds the routine readings waiting (a batch is let in while fewer are
    waiting, so a queue may hold up to one batch more); urgent batches have a bound of their
    own and are taken first. ``join`` waits until the consumer has taken every reading put in
    (shed ones included).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._routine: collections.deque[Sequence[Reading]] = collections.deque()
        self._urgent: collections.deque[Sequence[Reading]] = collections.deque()
        self._routine_size = 0
        self._urgent_size = 0
        #: The batch being taken reading by reading, and the position in it.
        self._current: Sequence[Reading] = _NO_READINGS
        self._pos = 0
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._putters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._urgent_putters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._unfinished = 0
        self._done = asyncio.Event()
        self._done.set()

    def qsize(self) -> int:
        """Readings waiting (urgent ones included)."""
        return self._routine_size + self._urgent_size + len(self._current) - self._pos

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether a routine batch would have to wait (or shed)."""
        return self._routine_size >= self.maxsize

    async def join(self) -> None:
        """Wait until every reading put in has been taken (or shed)."""
        await self._done.wait()

    async def put(self, batch: Sequence[Reading], *, urgent: bool = False) -> None:
        """Queue ``batch``, waiting while its kind's bound is reached."""
        putters = self._urgent_putters if urgent else self._putters
        while not self.put_nowait(batch, urgent=urgent):
            waiter = asyncio.get_running_loop().create_future()
            putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in putters:
                    putters.remove(waiter)
                else:  # woken: another putter may go in the room this one leaves
                    self._wake(putters)
                raise

    def put_nowait(self, batch: Sequence[Reading], *, urgent: bool = False) -> bool:
        """Queue ``batch`` if its kind's bound is not reached; False (nothing queued) if it
        is, and :meth:`put` must wait."""
        if (self._urgent_size if urgent else self._routine_size) >= self.maxsize:
            return False
        self._add(batch, urgent)
        putters = self._urgent_putters if urgent else self._putters
        if putters and (self._urgent_size if urgent else self._routine_size) < self.maxsize:
            self._wake(putters)  # room for more than this batch
        return True

    def put_shedding(self, batch: Sequence[Reading]) -> int:
        """Queue ``batch`` without waiting: beyond ``maxsize`` the oldest readings go.

        Returns:
            How many readings were shed.
        """
        self._add(batch, False)
        excess = self._routine_size - self.maxsize
        shed = 0
        while excess > 0 and self._routine:
            oldest = self._routine[0]
            if len(oldest) <= excess:
                self._routine.popleft()
                gone = len(oldest)
            else:
                self._routine[0] = oldest[excess:]
                gone = excess
            excess -= gone
            shed += gone
        self._routine_size -= shed
        self._finish(shed)
        return shed

    async def get(self) -> Reading:
        """The next reading, waiting for one if need be."""
        while self._pos >= len(self._current):
            if not self._next_batch():
                await self._wait_for_batch()
        reading = self._current[self._pos]
        self._pos += 1
        self._finish(1)
        return reading

    def get_nowait(self) -> Reading | None:
        """The next reading, or ``None`` when none is waiting."""
        if self._pos >= len(self._current) and not self._next_batch():
            return None
        reading = self._current[self._pos]
        self._pos += 1
        self._finish(1)
        return reading

    async def get_batch(self) -> Sequence[Reading]:
        """What is left of the batch being taken, else the next batch (urgent ones first),
        waiting for one if need be; never empty."""
        while self._pos >= len(self._current):
            if not self._next_batch():
                await self._wait_for_batch()
        return self._take_rest()

    def get_batch_nowait(self) -> Sequence[Reading] | None:
        """As :meth:`get_batch`, or ``None`` when no reading is waiting."""
        if self._pos >= len(self._current) and not self._next_batch():
            return None
        return self._take_rest()

    # -- helpers

    def _add(self, batch: Sequence[Reading], urgent: bool) -> None:
        if not batch:
            return
        if urgent:
            self._urgent.append(batch)
            self._urgent_size += len(batch)
        else:
            self._routine.append(batch)
            self._routine_size += len(batch)
        self._unfinished += len(batch)
        self._done.clear()
        self._wake(self._getters)

    def _next_batch(self) -> bool:
        """Start taking the next batch (urgent ones first); False when there is none."""
        if self._urgent:
            batch = self._urgent.popleft()
            self._urgent_size -= len(batch)
            self._wake(self._urgent_putters)
        elif self._routine:
            batch = self._routine.popleft()
            self._routine_size -= len(batch)
            self._wake(self._putters)
        else:
            self._current, self._pos = _NO_READINGS, 0
            return False
        self._current, self._pos = batch, 0
        return True

    def _take_rest(self) -> Sequence[Reading]:
        batch, pos = self._current, self._pos
        rest = batch if pos == 0 else batch[pos:]
        self._current, self._pos = _NO_READINGS, 0
        self._finish(len(rest))
        return rest

    async def _wait_for_batch(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._getters.append(waiter)
        try:
            await waiter
        except BaseException:
            waiter.cancel()
            if waiter in self._getters:
                self._getters.remove(waiter)
            elif self.qsize():
                self._wake(self._getters)  # woken for a batch it will not take
            raise

    def _finish(self, count: int) -> None:
        self._unfinished -= count
        if self._unfinished <= 0:
            self._unfinished = 0
            self._done.set()

    @staticmethod
    def _wake(waiters: collections.deque[asyncio.Future[None]]) -> None:
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


@dataclass(eq=False)
class Subscription:
    """One consumer's bounded queue of readings."""

    name: str
    overflow: Overflow
    queue: ReadingQueue
    dropped: int = 0
    delivered: int = 0
    _closed: bool = field(default=False, repr=False)

    async def get(self) -> Reading:
        reading = await self.queue.get()
        self.delivered += 1
        return reading

    def get_nowait(self) -> Reading | None:
        """The next queued reading, or ``None`` when the queue is empty (never waits)."""
        reading = self.queue.get_nowait()
        if reading is not None:
            self.delivered += 1
        return reading

    async def get_batch(self) -> Sequence[Reading]:
        """The next batch of readings (or the rest of one partly taken with :meth:`get`):
        the readings of one message or poll block, in order; urgent batches first."""
        batch = await self.queue.get_batch()
        self.delivered += len(batch)
        return batch

    def get_batch_nowait(self) -> Sequence[Reading] | None:
        """As :meth:`get_batch`, or ``None`` when the queue is empty (never waits)."""
        batch = self.queue.get_batch_nowait()
        if batch is not None:
            self.delivered += len(batch)
        return batch

    async def __aiter__(self) -> AsyncIterator[Reading]:
        while True:
            yield await self.get()


@dataclass(eq=False)
class Tap:
    """A consumer the bus calls inline with each batch (see the module's docstring)."""

    name: str
    take: Callable[[Sequence[Reading]], None]
    #: Readings handed to ``take``.
    delivered: int = 0
    #: Batches whose ``take`` raised (their readings are counted as delivered all the same).
    failed: int = 0


class Bus:
    """Publishes each batch of readings to every subscription and tap."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._taps: list[Tap] = []
        #: Readings published.
        self.published = 0

    def subscribe(self, name: str, *, maxsize: int = 1000,
                  overflow: Overflow = Overflow.BLOCK) -> Subscription:
        """Add a consumer; ``maxsize`` bounds its queue in readings (must be > 0)."""
        if maxsize <= 0:
            raise ValueError(f"subscription {name!r}: maxsize must be > 0, got {maxsize}")
        sub = Subscription(name, overflow, ReadingQueue(maxsize))
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def tap(self, name: str, take: Callable[[Sequence[Reading]], None]) -> Tap:
        """Add a consumer called inline with each batch (after every queue has it); ``take``
        must be quick and never wait, and must not change the sequence it is given."""
        tap = Tap(name, take)
        self._taps.append(tap)
        return tap

    def untap(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    @property
    def taps(self) -> tuple[Tap, ...]:
        return tuple(self._taps)

    async def publish(self, readings: Reading | Sequence[Reading], *,
                      urgent: bool = False) -> None:
        """Deliver one reading or one batch to every subscriber, waiting only on ``block``
        subscribers that are full.

        Args:
            readings: A reading, or the readings of one message or poll block (the bus keeps
                the sequence: do not change it afterwards).
            urgent: Life-safety readings: they overtake routine ones queued for ``block``
                subscribers.
        """
        batch: Sequence[Reading] = (readings,) if isinstance(readings, Reading) else readings
        if not batch:
            return
        self.published += len(batch)
        for sub in self._subs:
            if sub.overflow is Overflow.BLOCK:
                if not sub.queue.put_nowait(batch, urgent=urgent):  # no coroutine when room
                    await sub.queue.put(batch, urgent=urgent)
                continue
            shed = sub.queue.put_shedding(batch)
            if shed:
                first = sub.dropped == 0
                sub.dropped += shed
                if first:
                    log.warning("bus: subscriber %s is not keeping up; dropping oldest readings "
                                "(counted in metrics, logged once)", sub.name)
        for tap in self._taps:
            tap.delivered += len(batch)
            try:
                tap.take(batch)
            except Exception:  # isolated: a view's bug must not stop the drivers
                tap.failed += 1
                if tap.failed == 1:
                    log.exception("bus: %s failed to take a batch of readings; it keeps being "
                                  "fed (failures counted in metrics, logged once)", tap.name)
