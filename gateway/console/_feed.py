"""The console's live feed: alarm, work-order and health changes to every open browser.

Decisions:

* **Never block the alarm path.** Publishing is synchronous and O(browsers): the event goes
  into a ring of the last :data:`RING` events and into each subscriber's bounded queue. Nothing
  the console does can slow the alarm engine down.
* **Never drop silently.** A browser that falls so far behind that its queue is full is sent a
  ``resync`` event (it re-reads the board) and its stream is ended; so is one reconnecting with
  a ``Last-Event-ID`` older than the ring. Any other reconnect (a network blip) resumes exactly
  after the last event it saw.
* Event ids are consecutive integers from the start of the process, with the process's start
  time as a prefix (``<boot>-<n>``), so an id from before a gateway restart is recognised as
  such and answered with ``resync``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

__all__ = ["RING", "EventHub", "FeedEvent"]

log = logging.getLogger(__name__)

#: Events kept for browsers that reconnect.
RING = 2000
#: Events a browser may be behind before it is told to re-read the board.
_QUEUE = 500


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One server-sent event: ``event: <kind>`` and a JSON ``data`` line."""

    id: str
    kind: str
    data: str

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode()


_RESYNC = "resync"


class EventHub:
    """Fans events out to subscribers; see the module docstring."""

    def __init__(self) -> None:
        self._boot = format(int(time.time() * 1000), "x")
        self._seq = itertools.count(1)
        self._ring: collections.deque[tuple[int, FeedEvent]] = collections.deque(maxlen=RING)
        self._subscribers: set[asyncio.Queue[FeedEvent | None]] = set()
        self.published = 0
        self.resyncs = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def current_id(self) -> str:
        """The id of the newest event so far: given to a new browser before any event, so
        that a reconnect resumes from here even if nothing happened in between."""
        return f"{self._boot}-{self._ring[-1][0] if self._ring else 0}"

    def publish(self, kind: str, data: Any) -> FeedEvent:
        """Send ``data`` (JSON-able) as a ``kind`` event to every browser; never blocks."""
        n = next(self._seq)
        event = FeedEvent(f"{self._boot}-{n}", kind, json.dumps(data, ensure_ascii=False,
                                                                separators=(",", ":")))
        self._ring.append((n, event))
        self.published += 1
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._resync(queue)
        return event

    async def stream(self, last_event_id: str | None = None, *,
                     heartbeat: float = 15.0) -> AsyncIterator[FeedEvent | None]:
        """Events for one browser: what it missed since ``last_event_id``, then live ones, and
        None after ``heartbeat`` seconds without any (a comment line keeps proxies and dead
        connections honest). Ends after a ``resync`` event (the browser reloads its data and
        reconnects)."""
        queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(_QUEUE)
        missed = self._since(last_event_id)
        self._subscribers.add(queue)
        try:
            if missed is None:
                self.resyncs += 1
                yield self._event(_RESYNC, {"reason": "too far behind or a new gateway run"})
                return
            for event in missed:
                yield event
            while True:
                try:
                    async with asyncio.timeout(heartbeat):
                        got = await queue.get()
                except TimeoutError:
                    yield None
                    continue
                if got is None:
                    yield self._event(_RESYNC, {"reason": "too far behind"})
                    return
                yield got
        finally:
            self._subscribers.discard(queue)

    def _since(self, last_event_id: str | None) -> list[FeedEvent] | None:
        """Events after ``last_event_id``; None when they are no longer all known."""
        if not last_event_id:
            return []
        boot, _, n = last_event_id.partition("-")
        if boot != self._boot or not n.isdigit():
            return None
        seen = int(n)
        if self._ring and seen < self._ring[0][0] - 1:
            return None
        return [event for i, event in self._ring if i > seen]

    def _resync(self, queue: asyncio.Queue[FeedEvent | None]) -> None:
        self.resyncs += 1
        self._subscribers.discard(queue)
        while not queue.empty():  # make room for the end marker
            queue.get_nowait()
        queue.put_nowait(None)
        log.info("console: a browser fell %d events behind; it is told to re-read the board",
                 _QUEUE)

    def _event(self, kind: str, data: Any) -> FeedEvent:
        return FeedEvent(f"{self._boot}-{next(self._seq)}", kind, json.dumps(data))
