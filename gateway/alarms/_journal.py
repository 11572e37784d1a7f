"""The alarm journal: every alarm event and operator action, in SQLite, before it is published.

Three tables:

* ``events`` — append-only history (one row per :class:`AlarmEvent`, announced or not);
  pruned by age and by row count, and the source of the KPIs;
* ``alarms`` — the current :class:`AlarmRecord` of every alarm that is not plain normal, so
  that a restart restores open alarms, shelving, latches and out-of-service exactly;
* ``meta`` — small JSON values (the flood detector's state).

Each :meth:`AlarmJournal.commit` is one transaction. The database runs in WAL mode with
``synchronous=NORMAL`` (survives a crash of the process); batches marked ``durable`` (life-safety
and urgent alarms, operator actions) switch to ``synchronous=FULL`` for their commit, which
fsyncs the WAL (survives a power cut).

All SQLite calls on a file run on one dedicated worker thread, in submission order: the event
loop never blocks on the disk, and no two transactions interleave. An in-memory journal (tests,
the demo) does no disk I/O and runs its calls inline.

The file is created owner-only and integrity-checked when opened; a file whose content cannot
be read (garbage, damaged pages, a newer propgw's layout) is moved aside and a fresh one started
(:mod:`gateway.statefiles`, :attr:`AlarmJournal.replaced`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.alarms._events import AlarmEvent
from gateway.alarms._lifecycle_state import event_from_json, event_to_json
from gateway.config import GatewayConfig, durable_state_dir
from gateway.errors import JournalError
from gateway.statefiles import join_worker, open_replacing, open_wal

__all__ = ["SCHEMA_VERSION", "AlarmJournal", "JournalBatch", "JournalState", "journal_path"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         REAL    NOT NULL,
    alarm_id   TEXT    NOT NULL,
    incident_id TEXT   NOT NULL,
    transition TEXT    NOT NULL,
    lifecycle  TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    priority   TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    announced  INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    body       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_alarm ON events (alarm_id, ts);
CREATE TABLE IF NOT EXISTS alarms (alarm_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def journal_path(config: GatewayConfig) -> Path | None:
    """Where ``config`` keeps its alarm journal; None means in memory.

    ``alarms.journal.path`` wins (relative paths are under ``state_dir``, ``:memory:`` is
    memory); otherwise ``alarms-<site>-<gateway>.sqlite3`` in the durable state folder (the
    file's ``state_dir``, or systemd's ``$STATE_DIRECTORY``), the same place as the outbox;
    otherwise memory, so that tests and the demo never write to ``/var/lib/propgw``.
    """
    configured = config.alarms.journal.path
    if configured == ":memory:":
        return None
    if isinstance(configured, Path):
        return configured if configured.is_absolute() else config.state_dir / configured
    state_dir = durable_state_dir(config)
    if state_dir is None:
        return None
    site = config.site
    return state_dir / f"alarms-{site.id}-{site.gateway_id}.sqlite3"


@dataclass
class JournalBatch:
    """What one transaction writes."""

    events: list[AlarmEvent] = field(default_factory=list)
    #: Events handed on earlier without being journaled (the disk was full): written first,
    #: and ``delivered_seq`` moves past them so a restart does not hand them on again.
    delivered: list[AlarmEvent] = field(default_factory=list)
    #: alarm id -> record snapshot (JSON-able) to store, or None to delete.
    records: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    #: fsync before returning (``synchronous=FULL``).
    durable: bool = False

    def __bool__(self) -> bool:
        return bool(self.events or self.delivered or self.records or self.meta)


@dataclass(frozen=True)
class JournalState:
    """What a restart restores."""

    records: list[dict[str, Any]]
    meta: dict[str, Any]


class AlarmJournal:
    """SQLite journal of alarm events and operator actions.

    Args:
        path: The database file; None keeps it in memory (lost at :meth:`close`).
        max_age: Events older than this many seconds are deleted.
        max_rows: At most this many events are kept, the oldest deleted first.
        prune_every: Prune after this many commits (and at :meth:`open`).
    """

    def __init__(self, path: Path | None, *, max_age: float = 90 * 86400.0,
                 max_rows: int = 200_000, prune_every: int = 200) -> None:
        if max_age <= 0 or max_rows < 1 or prune_every < 1:
            raise ValueError("max_age, max_rows and prune_every must be positive")
        self.path = path
        self.max_age = max_age
        self.max_rows = max_rows
        self._prune_every = prune_every
        self._commits = 0
        self._executor: ThreadPoolExecutor | None = None
        self._open = False
        self._conn: sqlite3.Connection | None = None
        self._full_sync = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Where an unreadable file found when opening was moved (a person should look).
        self.replaced: Path | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig) -> AlarmJournal:
        """The journal ``config`` names (see :func:`journal_path`), with its retention."""
        j = config.alarms.journal
        return cls(journal_path(config), max_age=j.max_age, max_rows=j.max_rows)

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else ":memory:"

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def inflight(self) -> int:
        """Calls submitted to the worker thread and not finished yet."""
        return self._inflight

    async def wait_idle(self) -> None:
        """Return when no call is in flight (tests use it to let the disk catch up)."""
        await self._idle.wait()

    async def open(self, now: float) -> None:
        """Open (creating the file and its directory if needed) and prune old entries.

        Raises:
            JournalError: the file cannot be opened or was written by a newer propgw.
        """
        if self._open:
            raise RuntimeError("the alarm journal is already open")
        if self.path is not None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="alarm-journal")
        self._open = True
        if self.path is None:
            log.warning("alarm journal in memory: alarms, shelving and latches will not survive "
                        "a restart (set state_dir or alarms.journal.path)")
        try:
            await self._call(self._open_sync, now)
        except BaseException:
            self._open = False
            await self._shutdown_executor()
            raise

    async def close(self) -> None:
        """Close the database and stop the worker thread; safe to call when closed."""
        if not self._open:
            return
        try:
            await self._call(self._close_sync)
        finally:
            self._open = False
            await self._shutdown_executor()

    async def commit(self, batch: JournalBatch, now: float) -> list[int]:
        """Write ``batch`` in one transaction; returns the sequence numbers of its
        ``delivered`` events, then of its ``events``.

        Raises:
            JournalError: the write failed (disk full, I/O error, journal closed).
        """
        if not batch:
            return []
        return await self._call(self._commit_sync, batch, now)

    async def load(self) -> JournalState:
        """The alarm records and meta values stored by earlier runs."""
        return await self._call(self._load_sync)

    async def events(self, *, since: float | None = None, alarm_id: str | None = None,
                     after_seq: int = 0, announced: bool | None = None,
                     limit: int | None = None) -> list[AlarmEvent]:
        """Journaled events, oldest first, optionally filtered.

        Args:
            since: Wall time of the oldest.
            alarm_id: Only this alarm's.
            after_seq: Only those after this sequence number.
            announced: Only those sent (True) or not sent (False) to the consumers.
            limit: At most this many.
        """
        return await self._call(self._events_sync, since, alarm_id, after_seq, announced,
                                limit)

    async def search(self, *, since: float, category: str | None = None,
                     priority: str | None = None, alarm_id: str | None = None,
                     text: str | None = None, before_seq: int | None = None,
                     limit: int = 200) -> list[AlarmEvent]:
        """Journaled events for people looking back (the console's history), newest first.

        Args:
            since: Wall time of the oldest.
            category: Only this category.
            priority: Only this priority.
            alarm_id: Only this alarm's.
            text: Found (case-insensitively) anywhere in the event: device, location,
                message, actor, reason.
            before_seq: Only events older than this sequence number (the next page).
            limit: At most this many.
        """
        sql, args = _search_sql(since=since, category=category, priority=priority,
                                alarm_id=alarm_id, text=text, before_seq=before_seq, limit=limit)
        return await self._call(self._search_sync, sql, args)

    async def last_seq(self) -> int:
        """The sequence number of the newest event (0 when there is none)."""
        return await self._call(
            lambda: int(self._connection().execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]))

    async def run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a read-only ``job`` (e.g. a KPI query) on the journal's thread."""
        return await self._call(lambda: job(self._connection()))

    async def prune(self, now: float) -> int:
        """Apply retention now; returns the number of events deleted."""
        return await self._call(self._prune_sync, now)

    # -- the worker thread

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if not self._open:
            raise JournalError("the alarm journal is closed", path=self.name)
        if self._executor is None:
            return self._guard(fn, *args)
        loop = asyncio.get_running_loop()
        self._inflight += 1
        self._idle.clear()
        try:
            return await loop.run_in_executor(self._executor, self._guard, fn, *args)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _guard(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise JournalError(str(exc), path=self.name) from exc
        except OSError as exc:
            raise JournalError(str(exc), path=self.name) from exc

    async def _shutdown_executor(self) -> None:
        executor, self._executor = self._executor, None
        await join_worker(executor)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError("the alarm journal is closed", path=self.name)
        return self._conn

    def _open_sync(self, now: float) -> None:
        moved = open_replacing(self.path, now, self._connect, log=log, what="alarm journal",
                               kept="the alarm history and open alarms before now")
        if moved is not None:
            self.replaced = moved
        self._full_sync = False
        self._prune_sync(now)

    def _connect(self) -> None:
        self._conn = open_wal(self.path, schema=_SCHEMA, version=SCHEMA_VERSION)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _commit_sync(self, batch: JournalBatch, now: float) -> list[int]:
        conn = self._connection()
        if batch.durable != self._full_sync:
            conn.execute(f"PRAGMA synchronous={'FULL' if batch.durable else 'NORMAL'}")
            self._full_sync = batch.durable
        seqs: list[int] = []
        meta = dict(batch.meta)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for e in [*batch.delivered, *batch.events]:
                cur = conn.execute(
                    "INSERT INTO events (ts, alarm_id, incident_id, transition, lifecycle, "
                    "state, priority, category, announced, actor, reason, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (e.ts, e.alarm_id, e.incident_id,
                     e.transition.value if e.transition else "",
                     e.lifecycle.value if e.lifecycle else "", e.state.value, e.priority,
                     e.category, int(e.announced), e.actor, e.reason,
                     json.dumps(event_to_json(e), ensure_ascii=False)))
                seqs.append(int(cur.lastrowid or 0))
            if batch.delivered:
                meta["delivered_seq"] = max(int(meta.get("delivered_seq", 0)),
                                            seqs[len(batch.delivered) - 1])
            for alarm_id, body in batch.records.items():
                if body is None:
                    conn.execute("DELETE FROM alarms WHERE alarm_id = ?", (alarm_id,))
                else:
                    conn.execute("INSERT OR REPLACE INTO alarms (alarm_id, body) VALUES (?, ?)",
                                 (alarm_id, json.dumps(body, ensure_ascii=False)))
            for key, value in meta.items():
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (key, json.dumps(value)))
            conn.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back on some errors (SQLITE_FULL): a ROLLBACK then
            # fails and would hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._commits += 1
        if self._commits % self._prune_every == 0:
            self._prune_sync(now)
        return seqs

    def _prune_sync(self, now: float) -> int:
        conn = self._connection()
        deleted = conn.execute("DELETE FROM events WHERE ts < ?", (now - self.max_age,)).rowcount
        deleted += conn.execute(
            "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?",
            (self.max_rows,)).rowcount
        if deleted:
            log.info("alarm journal %s: %d old event(s) deleted (retention)", self.name,
                     deleted)
        return int(deleted)

    def _load_sync(self) -> JournalState:
        conn = self._connection()
        records = [json.loads(body) for (body,) in
                   conn.execute("SELECT body FROM alarms ORDER BY alarm_id")]
        meta = {key: json.loads(value) for key, value in
                conn.execute("SELECT key, value FROM meta")}
        return JournalState(records=records, meta=meta)

    def _search_sync(self, sql: str, args: list[Any]) -> list[AlarmEvent]:
        return [event_from_json(json.loads(body), seq=seq)
                for seq, body in self._connection().execute(sql, args)]

    def _events_sync(self, since: float | None, alarm_id: str | None, after_seq: int,
                     announced: bool | None, limit: int | None) -> list[AlarmEvent]:
        sql = "SELECT seq, body FROM events WHERE ts >= ? AND seq > ?"
        args: list[Any] = [since if since is not None else float("-inf"), after_seq]
        if alarm_id is not None:
            sql += " AND alarm_id = ?"
            args.append(alarm_id)
        if announced is not None:
            sql += " AND announced = ?"
            args.append(int(announced))
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [event_from_json(json.loads(body), seq=seq)
                for seq, body in self._connection().execute(sql, args)]


def _search_sql(*, since: float, category: str | None, priority: str | None,
                alarm_id: str | None, text: str | None, before_seq: int | None,
                limit: int) -> tuple[str, list[Any]]:
    sql = "SELECT seq, body FROM events WHERE ts >= ?"
    args: list[Any] = [since]
    for column, value in (("category", category), ("priority", priority),
                          ("alarm_id", alarm_id)):
        if value:
            sql += f" AND {column} = ?"  # column names from this list only
            args.append(value)
    if before_seq is not None:
        sql += " AND seq < ?"
        args.append(before_seq)
    if text:
        sql += " AND instr(lower(body), lower(?)) > 0"
        args.append(text)
    sql += " ORDER BY seq DESC LIMIT ?"
    args.append(limit)
    return sql, args
