"""The InfluxDB stage: readings from the bus, in batches, to InfluxDB's ``/api/v2/write``.

Decisions, written down before the code:

* **Never in the alarm path.** The stage reads its own bus subscription with ``drop-oldest``:
  a slow or dead InfluxDB fills that queue and sheds its oldest readings (counted as
  ``queue_dropped``); the alarm engine's feed is untouched. The stage is not critical: its
  crashes and outages make the health ``degraded``, never ``failing``.
* **Batches** are sealed when ``batch_size`` points are collected or ``batch_interval`` after
  the first of them, whichever comes first, and carry a sequence number.
* **Two tasks.** The collector only encodes and seals; the sender does the network. While the
  sender waits on a write, sealed batches queue in memory up to :data:`READY_BATCHES`; beyond
  that the collector moves the oldest to the buffer, so a hanging request never costs readings.
* **Unreachable, timeouts, 5xx, 429**: the batch goes to the bounded buffer (SQLite under
  ``state_dir``, memory without one), and the sender retries after a capped, jittered backoff
  (``retry_max``). While the buffer has batches, the oldest is always sent first; newer
  batches join the buffer behind it. A full buffer drops its oldest batches (``dropped``,
  logged once per outage).
* **401, 403, 404** (bad token, no permission, no such bucket): a configuration mistake that
  waiting does not fix, but that a person will fix. Batches are kept (bounded as above) and
  retried every ``retry_max``; the health names the answer.
* **Other 4xx** (400 bad line protocol, 413 too large, 422): the batch itself is refused and
  would be refused again; it is dropped (``rejected``) and logged, never retried.
* **At least once, no duplicates in the data.** A batch leaves the buffer only after InfluxDB
  answered 2xx. A write that timed out after the server stored it is sent again; InfluxDB then
  overwrites the same points (same series and timestamp), so the data has no duplicates.
* **Shutdown** moves what is collected but unsent into the buffer, so a restart with a
  ``state_dir`` loses nothing that was read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gateway.accounting import building_devices
from gateway.aio import first_of
from gateway.backoff import Backoff
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import GatewayConfig, InfluxConfig
from gateway.influx._buffer import Batch, DiskBuffer
from gateway.influx._errors import WriteError
from gateway.influx._lines import DeviceTags, LineEncoder
from gateway.statefiles import is_unreadable, quarantine

if TYPE_CHECKING:
    from gateway.influx._transport import Transport

__all__ = ["READY_BATCHES", "InfluxState", "InfluxStatus", "InfluxWriter"]

log = logging.getLogger(__name__)

#: Sealed batches held in memory while a write is in flight; older ones go to the buffer.
READY_BATCHES = 4
#: Answers that mean "the server or the way to it is in trouble": keep and retry.
_RETRY_STATUS = frozenset({408, 429})
#: Answers that mean "fix the configuration": keep, retry slowly.
_CONFIG_STATUS = frozenset({401, 403, 404})
#: Time left to move unsent batches into the buffer on shutdown.
_SAVE_TIMEOUT = 2.0

InfluxState = Literal["starting", "up", "down", "refused"]


@dataclass(frozen=True, slots=True)
class InfluxStatus:
    """The stage's counters at one moment (health, status API, Prometheus metrics).

    Attributes:
        state: ``up`` after a write succeeded, ``down`` while writes fail (unreachable,
            timeouts, 5xx), ``refused`` while InfluxDB answers 401/403/404.
        written: Points InfluxDB accepted since start.
        batches_written: Write requests InfluxDB accepted since start.
        buffered: Points waiting in the buffer now (``buffered_bytes`` their size).
        dropped: Points dropped because the buffer was full (oldest first), since start.
        rejected: Points in batches InfluxDB refused as bad (400, 413, 422), since start.
        queue_dropped: Readings dropped from the stage's bus queue (it fell behind).
        last_error: The last failed write, for people; None after a success.
        last_write: Wall-clock time of the last accepted write; None before the first.
        durable: The buffer is a file (it survives a restart).
    """

    state: InfluxState
    written: int
    batches_written: int
    buffered: int
    buffered_bytes: int
    dropped: int
    rejected: int
    queue_dropped: int
    last_error: str | None
    last_write: float | None
    durable: bool


class InfluxWriter:
    """Writes every reading it is fed to InfluxDB, in batches, buffering through outages.

    Args:
        config: The site config (its ``influxdb`` section must be set).
        clock: Batch intervals and retry delays run on it.
        buffer_path: The buffer's SQLite file; None keeps the buffer in memory.
    """

    def __init__(self, config: GatewayConfig, clock: Clock, *,
                 buffer_path: Path | None) -> None:
        if config.influxdb is None:
            raise ValueError("InfluxWriter needs the config's influxdb section")
        self.cfg: InfluxConfig = config.influxdb
        self._clock = clock
        self._encoder = LineEncoder(
            config.site.id,
            # With accounting, its building.<name> devices get their building and kind too.
            {d.id: DeviceTags(d.location.building, d.location.floor, d.kind)
             for d in [*config.devices, *building_devices(config).values()]},
            self.cfg.precision)
        self.buffer = DiskBuffer(buffer_path, max_points=self.cfg.buffer.max_points,
                                 max_bytes=int(self.cfg.buffer.max_bytes))
        self._backoff = Backoff(base=min(1.0, self.cfg.retry_max), cap=self.cfg.retry_max)
        self._feed: Subscription | None = None
        self._pending: list[str] = []
        self._pending_since = 0.0
        self._ready: collections.deque[Batch] = collections.deque()
        #: A batch taken from ``_ready`` whose write has not ended (saved on shutdown).
        self._in_flight: Batch | None = None
        self._seq = 1
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._outage_drops_logged = False
        self._state: InfluxState = "starting"
        self._written = 0
        self._batches_written = 0
        self._dropped = 0
        self._rejected = 0
        self._last_error: str | None = None
        self._last_write: float | None = None

    def status(self) -> InfluxStatus:
        """The counters now (cheap: no I/O)."""
        return InfluxStatus(
            state=self._state, written=self._written, batches_written=self._batches_written,
            buffered=self.buffer.points, buffered_bytes=self.buffer.bytes,
            dropped=self._dropped, rejected=self._rejected,
            queue_dropped=self._feed.dropped if self._feed is not None else 0,
            last_error=self._last_error, last_write=self._last_write,
            durable=self.buffer.path is not None)

    async def run(self, feed: Subscription) -> None:
        """Collect and write until cancelled; what is unsent then stays in the buffer."""
        self._feed = feed
        self._seq = await self._open_buffer()
        if self.buffer.points:
            log.info("influxdb: %d point(s) in %d batch(es) left in the buffer from before; "
                     "sending them first", self.buffer.points, self.buffer.batches)
        try:
            # influxdb-client is a heavy import: off the event loop, then cheap below.
            await asyncio.to_thread(importlib.import_module, "gateway.influx._transport")
            from gateway.influx._transport import open_transport  # noqa: PLC0415 - see module

            async with open_transport(self.cfg) as transport, asyncio.TaskGroup() as tg:
                tg.create_task(self._collect(feed), name="influxdb.collect")
                tg.create_task(self._send_loop(transport), name="influxdb.send")
        finally:
            await self._save_unsent()

    async def _open_buffer(self) -> int:
        """Open the buffer file; an unreadable one is moved aside (history is not worth a
        gateway that cannot start) and a fresh one begun."""
        unreadable: sqlite3.DatabaseError | None = None
        try:
            return await asyncio.to_thread(self.buffer.open)
        except sqlite3.DatabaseError as exc:
            if self.buffer.path is None or not is_unreadable(exc):
                raise
            unreadable = exc
        path = self.buffer.path
        moved = await asyncio.to_thread(quarantine, path, self._clock.time())
        log.error("influxdb: the buffer file %s is unreadable (%s); moved to %s, starting an "
                  "empty one", path, unreadable, moved)
        return await asyncio.to_thread(self.buffer.open)

    # -- collector

    async def _collect(self, feed: Subscription) -> None:
        while True:
            for reading in await feed.get_batch():  # one queue operation per batch
                if not self._pending:
                    self._pending_since = self._clock.monotonic()
                    self._wake.set()  # the sender times the interval from now
                self._pending.append(self._encoder.line(reading))
                if len(self._pending) >= self.cfg.batch_size:
                    self._seal()
                    while len(self._ready) > READY_BATCHES:
                        await self._keep(self._ready.popleft())

    def _seal(self) -> None:
        if not self._pending:
            return
        lines = "\n".join(self._pending).encode()
        self._ready.append(Batch(self._seq, len(self._pending), lines))
        self._seq += 1
        self._pending = []
        self._wake.set()

    async def _keep(self, batch: Batch) -> None:
        """Into the buffer, counting (and once per outage logging) what it drops. A buffer
        that cannot be written (disk full) drops the batch: history must not stop the stage."""
        try:
            dropped = await asyncio.to_thread(self.buffer.push, batch)
        except sqlite3.Error as exc:
            dropped = batch.points
            self._last_error = f"cannot write the buffer {self.buffer.path}: {exc}"
            if not self._outage_drops_logged:
                log.warning("influxdb: %s; dropping points (counted, logged once per outage)",
                            self._last_error)
            self._outage_drops_logged = True
        if dropped:
            self._dropped += dropped
            if not self._outage_drops_logged:
                self._outage_drops_logged = True
                log.warning("influxdb: buffer full (%d points / %d bytes): dropping the oldest "
                            "points (counted in the health and metrics, logged once per "
                            "outage)", self.cfg.buffer.max_points, int(self.cfg.buffer.max_bytes))

    # -- sender

    async def _send_loop(self, transport: Transport) -> None:
        while True:
            now = self._clock.monotonic()
            if self._pending and now >= self._pending_since + self.cfg.batch_interval:
                self._seal()
            waiting = self._ready or self.buffer.batches
            if waiting and now >= self._retry_at:
                await self._send_next(transport)
                continue
            if waiting and self._ready:
                # Down: what is ready waits in the buffer, where it is bounded and durable.
                while self._ready:
                    await self._keep(self._ready.popleft())
            deadlines = []
            if self._pending:
                deadlines.append(self._pending_since + self.cfg.batch_interval)
            if self.buffer.batches:
                deadlines.append(self._retry_at)
            self._wake.clear()
            if deadlines:
                await first_of(self._wake.wait(), self._clock.sleep_until(min(deadlines)))
            else:
                await self._wake.wait()

    async def _send_next(self, transport: Transport) -> None:
        from_buffer = self.buffer.batches > 0
        batch = (await asyncio.to_thread(self.buffer.oldest)) if from_buffer else None
        if batch is None:
            if not self._ready:
                return
            from_buffer = False
            batch = self._in_flight = self._ready.popleft()
        try:
            await transport.write(batch.lines)
        except WriteError as exc:
            await self._failed(batch, exc, from_buffer)
            self._in_flight = None
            return
        # (Not in a finally: a stop during the write leaves it for _save_unsent.)
        self._in_flight = None
        if from_buffer:
            await asyncio.to_thread(self.buffer.remove, batch)
        self._written += batch.points
        self._batches_written += 1
        self._last_write = self._clock.time()
        if self._state in ("down", "refused"):
            log.info("influxdb: writing again (%d point(s) buffered)", self.buffer.points)
        self._state = "up"
        self._last_error = None
        self._retry_at = 0.0
        self._outage_drops_logged = False
        self._backoff.reset()

    async def _failed(self, batch: Batch, exc: WriteError, from_buffer: bool) -> None:
        status = exc.status
        message = f"{exc}"
        if 400 <= status < 500 and status not in _RETRY_STATUS | _CONFIG_STATUS:
            self._rejected += batch.points
            if from_buffer:
                await asyncio.to_thread(self.buffer.remove, batch)
            log.warning("influxdb: a batch of %d point(s) was refused and is dropped: %s",
                        batch.points, message)
            self._last_error = message
            return
        if not from_buffer:
            await self._keep(batch)
        refused = status in _CONFIG_STATUS
        delay = self._backoff.give_up_to_cap() if refused else self._backoff.next_delay()
        self._retry_at = self._clock.monotonic() + delay
        state: InfluxState = "refused" if refused else "down"
        if self._state != state or self._last_error != message:
            hint = (" (check influxdb.token, org and bucket)" if refused else "")
            log.warning("influxdb: write failed: %s%s; %d point(s) buffered, retrying in "
                        "%.0f s", message, hint, self.buffer.points, delay)
        else:
            log.debug("influxdb: write failed again: %s; retrying in %.1f s", message, delay)
        self._state = state
        self._last_error = message

    # -- shutdown

    async def _save_unsent(self) -> None:
        """Move collected and sealed but unsent batches (and one whose write was cut short:
        it may be sent twice, which InfluxDB absorbs) into the buffer, then close it."""
        self._seal()
        batches = ([self._in_flight] if self._in_flight is not None else []) + list(self._ready)
        self._in_flight = None
        self._ready.clear()

        def save() -> None:
            try:
                for batch in batches:
                    self._dropped += self.buffer.push(batch)
            except sqlite3.Error as exc:
                log.warning("influxdb: unsent readings could not be saved in %s: %s",
                            self.buffer.path, exc)
            finally:
                self.buffer.close()

        started = time.monotonic()
        worker = asyncio.ensure_future(asyncio.to_thread(save))
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(max(0.0, _SAVE_TIMEOUT - (time.monotonic()
                                                                     - started))):
                    await asyncio.shield(worker)
            raise
