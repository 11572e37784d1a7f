"""The work-order history: every version of every work order, kept for the operator console.

The work-order desk forgets an order once it is closed, and the outbox keeps only the latest
snapshot of the open ones; this log keeps the whole timeline of each order (raised, escalated
level by level, pre-alerts, the platform's answers, cleared, SLA breaches) so that the console
can show open and recent orders and how each one went.

Durability: a read-side record, not part of delivery. SQLite in WAL mode with
``synchronous=NORMAL``: a crash of the process loses nothing written, a power cut may lose the
last few versions (the outbox, not this log, is what makes an order survive that). The file is
created owner-only and integrity-checked when opened; a file whose content cannot be read is
moved aside (kept, logged at CRITICAL, shown in :meth:`WorkOrderLog.health`) and a fresh one
started. A file that cannot be opened at all (permissions, read-only disk) makes the log run in
memory, and the health says so. ``path=None`` keeps it in memory on purpose (tests, the demo).

Back-pressure: :meth:`WorkOrderLog.record` never waits for the disk. It queues the version in
memory and returns; one writer task writes what is queued in one transaction on the log's own
worker thread (every SQLite call, reads included, runs there, in order, so the event loop never
touches the disk). The queue is bounded (``max_pending``): past the bound, which only a long
storage failure can reach, the oldest unwritten versions are dropped and counted (logged once).

Failure: a write that fails (disk full, I/O error) is logged once at ERROR; the versions stay
queued and are written again every ``retry_every`` seconds and whenever a new version arrives;
recovery is logged once. Queries always include the queued versions, so the console shows the
latest state of every order even while the disk refuses writes. Reads that fail raise
:class:`~gateway.errors.WorkOrderLogError`.

Retention: whole orders are deleted, never parts of a timeline: those last updated more than
``max_age`` ago, and the oldest beyond ``max_versions`` versions in all (an order is kept whole
as long as the newer ones leave room, so the total may pass the bound by one order's timeline).
Retention runs when the log is opened and after every ``prune_every`` versions written.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from gateway.aio import first_of
from gateway.clock import Clock
from gateway.config import GatewayConfig, durable_state_dir
from gateway.errors import WorkOrderLogError
from gateway.statefiles import join_worker, open_replacing, open_wal
from gateway.workorders._model import CLOSED_STATUSES, WorkOrder, parse_instant

__all__ = ["WorkOrderHistory", "WorkOrderLog", "WorkOrderLogHealth", "work_order_log_path"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_T = TypeVar("_T")
#: Versions written per transaction, at most.
_BATCH = 500
#: How long closing waits for the last writes.
_CLOSE_TIMEOUT = 2.0
#: Ids per ``IN (...)`` list (SQLite's limit on bound variables is 999 in old builds).
_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id       TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    event    TEXT    NOT NULL,
    status   TEXT    NOT NULL,
    updated  REAL    NOT NULL,
    recorded REAL    NOT NULL,
    body     TEXT    NOT NULL,
    PRIMARY KEY (id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders (
    id       TEXT    PRIMARY KEY,
    seq      INTEGER NOT NULL,
    status   TEXT    NOT NULL,
    category TEXT    NOT NULL,
    priority TEXT    NOT NULL,
    closed   INTEGER NOT NULL,
    breaches INTEGER NOT NULL,
    raised   REAL    NOT NULL,
    updated  REAL    NOT NULL,
    versions INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_updated ON orders (updated);
CREATE INDEX IF NOT EXISTS orders_closed ON orders (closed, updated);
"""


def work_order_log_path(config: GatewayConfig,
                        env: Mapping[str, str] | None = None) -> Path | None:
    """Where ``config`` keeps its work-order history: ``workorders-<site>-<gateway>.sqlite3``
    in the durable state folder (next to the outbox and the alarm journal); None (memory) when
    no durable folder is configured, so that tests and the demo never write to
    ``/var/lib/propgw``."""
    state_dir = durable_state_dir(config, env)
    if state_dir is None:
        return None
    return state_dir / f"workorders-{config.site.id}-{config.site.gateway_id}.sqlite3"


@dataclass(frozen=True, slots=True)
class WorkOrderHistory:
    """One order's timeline.

    Attributes:
        latest: The version with the highest ``seq``.
        versions: Every version kept, oldest (``seq`` 1, raised) first.
    """

    latest: WorkOrder
    versions: list[WorkOrder]


@dataclass(frozen=True, slots=True)
class WorkOrderLogHealth:
    """What the console and the health report show about the history."""

    path: str | None
    #: False when the file could not be opened and the history lives in memory only.
    durable: bool
    #: The last write failure while it lasts, else None.
    storage_error: str | None
    #: Versions recorded and not written yet.
    pending: int
    #: Versions dropped unwritten because the queue was full during a storage failure.
    lost: int
    #: Where an unreadable file found when opening was moved (a person should look at it).
    replaced: str | None

    @property
    def ok(self) -> bool:
        return self.durable and self.storage_error is None


@dataclass(frozen=True, slots=True)
class _Entry:
    n: int
    order: WorkOrder
    row: tuple[Any, ...]
    updated: float


@dataclass(frozen=True, slots=True)
class _Filter:
    since: float | None
    statuses: frozenset[str] | None
    category: str | None
    closed: bool | None
    breached: bool | None
    source: str | None = None

    def matches(self, entry: _Entry) -> bool:
        order = entry.order
        return ((self.since is None or entry.updated >= self.since)
                and (self.statuses is None or order.status in self.statuses)
                and (self.category is None or order.category == self.category)
                and (self.closed is None or (order.status in CLOSED_STATUSES) == self.closed)
                and (self.breached is None or bool(order.breaches) == self.breached)
                and (self.source is None or order.source == self.source))


class WorkOrderLog:
    """SQLite history of every work-order version (see the module docstring).

    Use as ``async with log:``; feed it with :meth:`record` from the desk's sink.

    Args:
        path: The database file; None keeps the history in memory (lost when closed).
        clock: Wall time for retention and ``recorded`` stamps; the retry timer.
        max_age: Orders last updated more than this many seconds ago are deleted.
        max_versions: About this many versions are kept, the oldest orders deleted first.
        max_pending: At most this many versions wait in memory for the disk.
        retry_every: Seconds between write attempts while the disk refuses them.
        prune_every: Apply retention after this many versions written.

    Raises:
        ValueError: a bound or period below 1 (``retry_every``, ``max_age``: not positive).
    """

    def __init__(self, path: Path | None, *, clock: Clock, max_age: float = 180 * 86400.0,
                 max_versions: int = 50_000, max_pending: int = 5_000,
                 retry_every: float = 5.0, prune_every: int = 500) -> None:
        if max_age <= 0 or retry_every <= 0:
            raise ValueError(f"max_age and retry_every must be > 0 (max_age={max_age}, "
                             f"retry_every={retry_every})")
        if max_versions < 1 or max_pending < 1 or prune_every < 1:
            raise ValueError(f"max_versions, max_pending and prune_every must be >= 1 "
                             f"(max_versions={max_versions}, max_pending={max_pending}, "
                             f"prune_every={prune_every})")
        self.path = path
        self.max_age = max_age
        self.max_versions = max_versions
        self._clock = clock
        self._max_pending = max_pending
        self._retry_every = retry_every
        self._prune_every = prune_every
        self._durable = path is not None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open = False
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._pending: collections.deque[_Entry] = collections.deque()
        self._numbers = itertools.count(1)
        self._last_n = 0
        self._flushes: list[tuple[int, asyncio.Future[bool]]] = []
        self._storage_error: str | None = None
        self._lost = 0
        self._since_prune = 0
        self._bad_rows = 0
        self._replaced: Path | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else ":memory:"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> WorkOrderLog:
        if self._open:
            raise RuntimeError("the work-order log is already open")
        if self.path is None:
            log.info("work-order history in memory: it is lost when the gateway stops")
        else:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="workorder-log")
        self._open = True
        try:
            failure = await self._open_file()
            if failure is not None:
                # Content that cannot be read was moved aside already; what is left is a file
                # that cannot be opened at all (permissions, a read-only disk).
                log.error("work-order history %s cannot be opened (%s): it is kept in memory "
                          "only and lost when the gateway stops", self.path, failure)
                await self._shutdown_executor()
                self._durable = False
                await self._call(self._open_sync, self._clock.time())
        except BaseException:
            self._open = False
            await self._shutdown_executor()
            raise
        self._stopping = False
        self._writer = asyncio.create_task(self._write_loop(), name="workorder-log.writer")
        self._writer.add_done_callback(_log_crash)
        return self

    async def _open_file(self) -> str | None:
        """Open the file; returns why it cannot be opened, if it cannot."""
        try:
            await self._call(self._open_sync, self._clock.time())
        except WorkOrderLogError as exc:
            if self.path is None:
                raise
            return exc.reason
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._open:
            return
        writer, self._writer = self._writer, None
        self._stopping = True
        self._wake.set()
        try:
            if writer is not None:
                # Time-boxed: the last versions are worth writing, but a hung disk must not
                # hold up shutdown. (asyncio.wait neither cancels the writer nor raises its
                # crash, which _log_crash has reported.)
                try:
                    _, running = await asyncio.wait({writer}, timeout=_CLOSE_TIMEOUT)
                except asyncio.CancelledError:
                    await _cancel(writer)
                    raise
                if running:
                    log.warning("work-order history: last writes did not finish within %.1fs",
                                _CLOSE_TIMEOUT)
                    await _cancel(writer)
        finally:
            if self._pending:
                log.error("work-order history %s: %d version(s) could not be written before "
                          "closing and are lost", self.name, len(self._pending))
            self._settle_flushes(upto=self._last_n, ok=False)
            await asyncio.shield(self._close())

    async def _close(self) -> None:
        try:
            await self._call(self._close_sync)
        finally:
            self._open = False
            await self._shutdown_executor()

    # ------------------------------------------------------------------ writing

    async def record(self, order: WorkOrder) -> None:
        """Add a version of an order to the history; returns at once (see the module
        docstring: written by the log's writer, retried if the disk refuses it).

        Raises:
            RuntimeError: the log is not open.
        """
        if self._writer is None:
            raise RuntimeError("the work-order log is not open")
        now = self._clock.time()
        try:
            updated = parse_instant(order.updated_at)
            raised = parse_instant(order.raised_at)
        except ValueError:
            updated = raised = now
        n = next(self._numbers)
        self._last_n = n
        row = (order.id, order.seq, order.event, order.status, order.category, order.priority,
               int(order.status in CLOSED_STATUSES), len(order.breaches), raised, updated, now,
               order.model_dump_json())
        self._pending.append(_Entry(n, order, row, updated))
        if len(self._pending) > self._max_pending:
            self._pending.popleft()
            self._lost += 1
            if self._lost == 1:
                log.error("work-order history: %d versions wait for the disk; dropping the "
                          "oldest (counted in health, logged once)", self._max_pending)
        self._wake.set()

    async def flush(self) -> bool:
        """Write what was recorded so far now (the disk permitting).

        Returns:
            True once all of it is on disk (or in the in-memory database), False when the
            attempt failed or the log closed first.
        """
        if self._writer is None or not self._pending:
            return self._writer is not None and self._storage_error is None
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._flushes.append((self._last_n, future))
        self._wake.set()
        return await asyncio.shield(future)

    def health(self) -> WorkOrderLogHealth:
        """A snapshot of the history's state for the console and health checks."""
        return WorkOrderLogHealth(
            path=str(self.path) if self.path is not None else None,
            durable=self._durable, storage_error=self._storage_error,
            pending=len(self._pending), lost=self._lost,
            replaced=str(self._replaced) if self._replaced is not None else None)

    # ------------------------------------------------------------------ queries

    async def recent(self, limit: int = 50, *, since: float | None = None,
                     status: str | Collection[str] | None = None, category: str | None = None,
                     closed: bool | None = None, breached: bool | None = None,
                     source: Literal["alarm", "report"] | None = None) -> list[WorkOrder]:
        """The latest version of each order, most recently updated first.

        Args:
            limit: At most this many orders (>= 1).
            since: Only orders last updated at or after this wall time (epoch seconds).
            status: Only orders whose latest status is this one (or one of these).
            category: Only this category's orders.
            closed: Only closed (resolved, rejected) orders, or only those not closed.
            breached: Only orders that missed a response window, or only those that did not.
            source: Only orders raised by alarms, or only reported repairs.

        Raises:
            ValueError: ``limit`` below 1.
            WorkOrderLogError: the history cannot be read.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        statuses = frozenset([status] if isinstance(status, str) else status) \
            if status is not None else None
        where = _Filter(since, statuses, category, closed, breached, source)
        queued = self._latest_queued()
        rows, stored = await self._call(self._recent_sync, limit + len(queued), where,
                                        list(queued))
        merged: dict[str, tuple[float, WorkOrder]] = {
            order.id: (updated, order) for updated, order in rows}
        for order_id, entry in queued.items():
            if stored.get(order_id, (0, False))[0] > entry.order.seq:
                continue  # the file holds a newer version than the one waiting
            merged.pop(order_id, None)
            if where.matches(entry):
                merged[order_id] = (entry.updated, entry.order)
        ranked = sorted(merged.values(), key=lambda u: (u[0], u[1].id), reverse=True)
        return [order for _, order in ranked[:limit]]

    async def get(self, order_id: str) -> WorkOrderHistory | None:
        """One order's timeline; None when the history does not know it.

        Raises:
            WorkOrderLogError: the history cannot be read.
        """
        queued = [e.order for e in self._pending if e.order.id == order_id]
        stored = await self._call(self._versions_sync, order_id)
        by_seq = {o.seq: o for o in [*stored, *queued]}  # a re-recorded version wins
        if not by_seq:
            return None
        versions = [by_seq[seq] for seq in sorted(by_seq)]
        return WorkOrderHistory(latest=versions[-1], versions=versions)

    async def count_open(self) -> int:
        """How many orders are not closed (resolved or rejected) in their latest version.

        An order the desk stopped tracking without closing it (``forget_after``) still counts:
        the history only knows what the desk reported.

        Raises:
            WorkOrderLogError: the history cannot be read.
        """
        queued = self._latest_queued()
        count, stored = await self._call(self._count_open_sync, list(queued))
        for order_id, entry in queued.items():
            seq, was_closed = stored.get(order_id, (0, True))
            if seq > entry.order.seq:
                continue
            count += int(entry.order.status not in CLOSED_STATUSES) - (
                int(not was_closed) if order_id in stored else 0)
        return count

    async def prune(self) -> int:
        """Apply retention now; returns the number of versions deleted.

        Raises:
            WorkOrderLogError: the history cannot be written.
        """
        return await self._call(self._prune_sync, self._clock.time())

    def _latest_queued(self) -> dict[str, _Entry]:
        """The highest-``seq`` version of each order waiting for the disk."""
        latest: dict[str, _Entry] = {}
        for entry in self._pending:
            held = latest.get(entry.order.id)
            if held is None or entry.order.seq >= held.order.seq:
                latest[entry.order.id] = entry
        return latest

    # ------------------------------------------------------------------ the writer task

    async def _write_loop(self) -> None:
        while True:
            self._wake.clear()
            if self._pending:
                written = await self._write_batch()
                if written and self._pending:
                    continue  # more arrived meanwhile, or more than one batch was queued
            if self._stopping:
                return
            await self._wait(self._retry_every if self._pending else None)

    async def _write_batch(self) -> bool:
        batch = list(itertools.islice(self._pending, _BATCH))
        upto = batch[-1].n
        failure: str | None = None
        try:
            await self._call(self._write_sync, [e.row for e in batch], self._clock.time())
        except WorkOrderLogError as exc:
            failure = exc.reason
        if failure is not None:
            if self._storage_error is None:
                log.error("work-order history %s: cannot write (%s); %d version(s) are kept "
                          "in memory and written again every %.0fs", self.name, failure,
                          len(self._pending), self._retry_every)
            else:
                log.debug("work-order history %s: write failed again: %s", self.name, failure)
            self._storage_error = failure
            self._settle_flushes(upto=upto, ok=False)
            return False
        while self._pending and self._pending[0].n <= upto:
            self._pending.popleft()
        if self._storage_error is not None:
            log.warning("work-order history %s: writes work again; the versions held in "
                        "memory are on disk", self.name)
            self._storage_error = None
        self._settle_flushes(upto=upto, ok=True)
        return True

    async def _wait(self, delay: float | None) -> None:
        """Until a version is recorded (or closing begins), or ``delay`` passes."""
        if delay is None:
            await self._wake.wait()
        else:
            await first_of(self._wake.wait(), self._clock.sleep(delay))

    def _settle_flushes(self, *, upto: int, ok: bool) -> None:
        keep: list[tuple[int, asyncio.Future[bool]]] = []
        for target, future in self._flushes:
            if target <= upto or not self._pending:
                if not future.done():
                    future.set_result(ok and not any(e.n <= target for e in self._pending))
            else:
                keep.append((target, future))
        self._flushes = keep

    # ------------------------------------------------------------------ the worker thread

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if not self._open:
            raise WorkOrderLogError("the work-order history is closed", path=self.name)
        if self._executor is None:
            return self._guard(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guard, fn, *args)

    def _guard(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            raise WorkOrderLogError(f"{type(exc).__name__}: {exc}", path=self.name) from exc

    async def _shutdown_executor(self) -> None:
        executor, self._executor = self._executor, None
        await join_worker(executor)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the work-order history is closed")
        return self._conn

    def _open_sync(self, now: float) -> None:
        path = self.path if self._durable else None
        moved = open_replacing(path, now, lambda: self._connect(path), log=log,
                               what="work-order history", kept="the orders before now")
        if moved is not None:
            self._replaced = moved
        try:
            self._prune_sync(now)
        except sqlite3.Error as exc:  # a full disk: the history is still worth opening
            log.warning("work-order history %s: retention could not run: %s", self.name, exc)

    def _connect(self, path: Path | None) -> None:
        self._conn = open_wal(path, schema=_SCHEMA, version=SCHEMA_VERSION)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _write_sync(self, rows: Sequence[tuple[Any, ...]], now: float) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for (order_id, seq, event, status, category, priority, closed, breaches, raised,
                 updated, recorded, body) in rows:
                conn.execute(
                    "INSERT OR REPLACE INTO versions (id, seq, event, status, updated, "
                    "recorded, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (order_id, seq, event, status, updated, recorded, body))
                conn.execute(
                    "INSERT INTO orders (id, seq, status, category, priority, closed, "
                    "breaches, raised, updated, versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0) "
                    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, "
                    "status = excluded.status, category = excluded.category, "
                    "priority = excluded.priority, closed = excluded.closed, "
                    "breaches = excluded.breaches, raised = excluded.raised, "
                    "updated = excluded.updated WHERE excluded.seq >= orders.seq",
                    (order_id, seq, status, category, priority, closed, breaches, raised,
                     updated))
            conn.executemany(
                "UPDATE orders SET versions = (SELECT COUNT(*) FROM versions "
                "WHERE versions.id = orders.id) WHERE id = ?",
                [(order_id,) for order_id in {row[0] for row in rows}])
            conn.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back on some errors (SQLITE_FULL): a ROLLBACK then
            # fails and would hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._since_prune += len(rows)
        if self._since_prune >= self._prune_every:
            try:
                self._prune_sync(now)
            except sqlite3.Error as exc:
                log.warning("work-order history %s: retention could not run: %s", self.name,
                            exc)

    def _prune_sync(self, now: float) -> int:
        conn = self._connection()
        self._since_prune = 0
        old = [r[0] for r in conn.execute("SELECT id FROM orders WHERE updated < ?",
                                          (now - self.max_age,))]
        # Newest first, an order is kept whole while the newer ones leave room for it.
        over = [r[0] for r in conn.execute(
            "SELECT id FROM (SELECT id, SUM(versions) OVER (ORDER BY updated DESC, id DESC) "
            "- versions AS newer FROM orders WHERE updated >= ?) WHERE newer >= ?",
            (now - self.max_age, self.max_versions))]
        doomed = [*old, *over]
        if not doomed:
            return 0
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for chunk in _chunks(doomed):
                marks = ",".join("?" * len(chunk))
                deleted += conn.execute(f"DELETE FROM versions WHERE id IN ({marks})",
                                        chunk).rowcount
                conn.execute(f"DELETE FROM orders WHERE id IN ({marks})", chunk)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("work-order history %s: %d old order(s), %d version(s), deleted (retention)",
                 self.name, len(doomed), deleted)
        return int(deleted)

    def _recent_sync(self, limit: int, where: _Filter, queued_ids: list[str]
                     ) -> tuple[list[tuple[float, WorkOrder]], dict[str, tuple[int, bool]]]:
        sql = ("SELECT o.updated, v.body FROM orders o JOIN versions v "
               "ON v.id = o.id AND v.seq = o.seq WHERE 1")
        args: list[Any] = []
        if where.since is not None:
            sql += " AND o.updated >= ?"
            args.append(where.since)
        if where.statuses is not None:
            sql += f" AND o.status IN ({','.join('?' * len(where.statuses))})"
            args += sorted(where.statuses)
        if where.category is not None:
            sql += " AND o.category = ?"
            args.append(where.category)
        if where.closed is not None:
            sql += " AND o.closed = ?"
            args.append(int(where.closed))
        if where.breached is not None:
            sql += " AND o.breaches > 0" if where.breached else " AND o.breaches = 0"
        if where.source is not None:  # versions before the field existed are alarms' orders
            sql += " AND COALESCE(json_extract(v.body, '$.source'), 'alarm') = ?"
            args.append(where.source)
        sql += " ORDER BY o.updated DESC, o.id DESC LIMIT ?"
        args.append(limit)
        conn = self._connection()
        rows = [(updated, order) for updated, body in conn.execute(sql, args)
                if (order := self._parse(body)) is not None]
        return rows, self._stored_sync(queued_ids)

    def _versions_sync(self, order_id: str) -> list[WorkOrder]:
        return [order for (body,) in self._connection().execute(
                    "SELECT body FROM versions WHERE id = ? ORDER BY seq", (order_id,))
                if (order := self._parse(body)) is not None]

    def _count_open_sync(self, queued_ids: list[str]
                         ) -> tuple[int, dict[str, tuple[int, bool]]]:
        count = self._connection().execute(
            "SELECT COUNT(*) FROM orders WHERE closed = 0").fetchone()[0]
        return int(count), self._stored_sync(queued_ids)

    def _stored_sync(self, order_ids: list[str]) -> dict[str, tuple[int, bool]]:
        """``(seq, closed)`` of the latest stored version of each of ``order_ids``."""
        stored: dict[str, tuple[int, bool]] = {}
        for chunk in _chunks(order_ids):
            stored.update((order_id, (seq, bool(closed))) for order_id, seq, closed in
                          self._connection().execute(
                              f"SELECT id, seq, closed FROM orders WHERE id IN "
                              f"({','.join('?' * len(chunk))})", chunk))
        return stored

    def _parse(self, body: str) -> WorkOrder | None:
        try:
            return WorkOrder.model_validate_json(body)
        except ValidationError as exc:
            self._bad_rows += 1
            if self._bad_rows == 1:
                log.warning("work-order history %s: a stored version cannot be read and is "
                            "skipped (logged once): %s", self.name, exc)
            return None


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start:start + _CHUNK])


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("work-order history writer crashed: nothing more will be stored",
                     exc_info=task.exception())
