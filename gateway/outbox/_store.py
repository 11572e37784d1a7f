"""The outbox's SQLite file. Synchronous: every method runs in a worker thread, never on the loop.

One connection, opened with ``check_same_thread=False`` and guarded by a lock, because
``asyncio.to_thread`` may pick a different worker each time; the outbox's single writer task
makes sure only one call is in flight anyway. ``locking_mode=EXCLUSIVE`` keeps a second gateway
process off the same file (it would send everything twice) and lets WAL work without shared
memory. The file is created owner-only and integrity-checked when opened
(:mod:`gateway.statefiles`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.statefiles import SchemaTooNew, check_integrity, prepare

__all__ = ["Done", "Flush", "Insert", "Loaded", "Op", "Park", "Probe", "SaveSnapshot", "Shed",
           "Store", "StoredRow", "Unpark", "salvage"]

_SCHEMA_VERSION = 1
#: How long to wait for a lock another process holds on the file (a previous gateway still
#: exiting) before giving up on it.
_LOCK_TIMEOUT = 1.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    rank INTEGER NOT NULL,
    channel TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery (
    message INTEGER NOT NULL REFERENCES message(id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    parked TEXT,
    PRIMARY KEY (message, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (data BLOB NOT NULL);
"""
_ROWS = ("SELECT m.id, m.kind, m.rank, m.channel, m.key, m.payload, m.created, d.target, "
         "d.parked FROM message m JOIN delivery d ON d.message = m.id ORDER BY m.id")


@dataclass(frozen=True, slots=True)
class Insert:
    id: int
    kind: str
    rank: int
    channel: str
    key: str
    payload: bytes
    created: float
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """The latest state of a work order, kept so the desk can carry on after a restart."""

    order_id: str
    body: str
    still_open: bool
    updated: float


@dataclass(frozen=True, slots=True)
class Done:
    id: int
    target: str


@dataclass(frozen=True, slots=True)
class Park:
    id: int
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class Unpark:
    id: int
    target: str


@dataclass(frozen=True, slots=True)
class Shed:
    id: int


@dataclass(frozen=True, slots=True)
class Flush:
    """Writes nothing: a transaction that only waits for the ones queued before it."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Writes ``size`` bytes (more than a typical work order) and takes them back: proves the
    disk takes writes again (confirmations alone prove little on a full disk: they free
    space)."""

    size: int = 8 * 1024


Op = Insert | SaveSnapshot | Done | Park | Unpark | Shed | Flush | Probe


@dataclass(frozen=True, slots=True)
class StoredRow:
    id: int
    kind: str
    rank: int
    channel: str
    key: str
    payload: bytes
    created: float
    target: str
    parked: str | None


@dataclass(slots=True)
class Loaded:
    rows: list[StoredRow] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    next_id: int = 1


class Store:
    """The SQLite side of the outbox; ``path`` None keeps it in memory (not durable)."""

    def __init__(self, path: Path | None, *, max_file_bytes: int | None = None) -> None:
        self.path = path
        self._max_file_bytes = max_file_bytes
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._synchronous = ""

    def open(self, *, snapshots_since: float) -> Loaded:
        """Create or open the file, and load what is still to be delivered.

        Raises:
            sqlite3.Error, OSError: the file cannot be created, opened or read.
        """
        with self._lock:
            if self.path is not None:
                prepare(self.path)
            conn = sqlite3.connect(str(self.path) if self.path else ":memory:",
                                   isolation_level=None, check_same_thread=False,
                                   timeout=_LOCK_TIMEOUT)
            try:
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
                self._set_synchronous(conn, durable=True)
                if self._max_file_bytes is not None:
                    page = conn.execute("PRAGMA page_size").fetchone()[0]
                    conn.execute(f"PRAGMA max_page_count={max(2, self._max_file_bytes // page)}")
                _check_version(conn)
                check_integrity(conn)
                conn.execute("BEGIN IMMEDIATE")
                # executescript() would COMMIT first; one statement at a time stays in BEGIN.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                conn.execute("DELETE FROM message WHERE id NOT IN "
                             "(SELECT message FROM delivery)")
                conn.execute("DELETE FROM snapshot WHERE updated < ?", (snapshots_since,))
                conn.execute("COMMIT")
                loaded = Loaded()
                loaded.rows = [StoredRow(*row) for row in conn.execute(_ROWS)]
                loaded.snapshots = [r[0] for r in conn.execute(
                    "SELECT body FROM snapshot ORDER BY updated")]
                max_id = conn.execute("SELECT max(id) FROM message").fetchone()[0]
                loaded.next_id = (max_id or 0) + 1
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            return loaded

    def apply(self, ops: Sequence[Op], *, durable: bool) -> None:
        """Write ``ops`` in one transaction; ``durable`` waits for the disk (fsync).

        Raises:
            sqlite3.Error: nothing of ``ops`` was written (disk full, read-only, I/O error).
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise sqlite3.OperationalError("outbox is closed")
            self._set_synchronous(conn, durable=durable)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    _apply(conn, op)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _set_synchronous(self, conn: sqlite3.Connection, *, durable: bool) -> None:
        # WAL + NORMAL survives a crash of the process but may lose the last commits on a
        # power cut; FULL fsyncs every commit. Life-safety batches pay for FULL.
        mode = "FULL" if durable else "NORMAL"
        if mode != self._synchronous:
            conn.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode


def salvage(path: Path) -> Loaded:
    """Whatever can still be read from an unreadable outbox file (best effort, read-only):
    its undelivered messages and work-order snapshots. Anything that fails yields nothing."""
    loaded = Loaded()
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=_LOCK_TIMEOUT)
    except sqlite3.Error:
        return loaded
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] > _SCHEMA_VERSION:
            return loaded  # a newer layout: do not guess at its columns
        try:
            loaded.rows = [StoredRow(*row) for row in conn.execute(_ROWS)]
        except (sqlite3.Error, TypeError):
            loaded.rows = []
        try:
            loaded.snapshots = [r[0] for r in conn.execute(
                "SELECT body FROM snapshot ORDER BY updated")]
        except sqlite3.Error:
            loaded.snapshots = []
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return loaded


def _check_version(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > _SCHEMA_VERSION:
        raise SchemaTooNew(
            f"outbox schema {version} is newer than this propgw ({_SCHEMA_VERSION})")


def _apply(conn: sqlite3.Connection, op: Op) -> None:
    if isinstance(op, Insert):
        conn.execute("INSERT OR IGNORE INTO message (id, kind, rank, channel, key, payload, "
                     "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (op.id, op.kind, op.rank, op.channel, op.key, op.payload, op.created))
        conn.executemany("INSERT OR IGNORE INTO delivery (message, target) VALUES (?, ?)",
                         [(op.id, t) for t in op.targets])
    elif isinstance(op, SaveSnapshot):
        if op.still_open:
            conn.execute("INSERT INTO snapshot (id, body, updated) VALUES (?, ?, ?) "
                         "ON CONFLICT(id) DO UPDATE SET body = excluded.body, "
                         "updated = excluded.updated", (op.order_id, op.body, op.updated))
        else:
            conn.execute("DELETE FROM snapshot WHERE id = ?", (op.order_id,))
    elif isinstance(op, Probe):
        conn.execute("INSERT INTO probe (data) VALUES (zeroblob(?))", (op.size,))
        conn.execute("DELETE FROM probe")
    elif isinstance(op, Done):
        conn.execute("DELETE FROM delivery WHERE message = ? AND target = ?", (op.id, op.target))
        conn.execute("DELETE FROM message WHERE id = ? AND NOT EXISTS "
                     "(SELECT 1 FROM delivery WHERE message = ?)", (op.id, op.id))
    elif isinstance(op, Park):
        conn.execute("UPDATE delivery SET parked = ? WHERE message = ? AND target = ?",
                     (op.reason, op.id, op.target))
    elif isinstance(op, Unpark):
        conn.execute("UPDATE delivery SET parked = NULL WHERE message = ? AND target = ?",
                     (op.id, op.target))
    elif isinstance(op, Shed):
        conn.execute("DELETE FROM message WHERE id = ?", (op.id,))
