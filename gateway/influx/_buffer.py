"""Batches waiting for InfluxDB, in a bounded SQLite file (or in memory without a state_dir).

Synchronous: the writer calls every method through ``asyncio.to_thread``, one call at a time,
so one connection (``check_same_thread=False``) guarded by a lock is enough.

Each batch keeps the sequence number it was made with, so a batch whose write failed goes back
in its place among older and newer ones: the buffer is always drained oldest first. When a new
batch would take the buffer over ``max_points`` or ``max_bytes``, the oldest batches are
deleted until it fits; the caller counts and logs what was dropped. History is worth less than
the newest readings, and the gateway's disk is not the place to keep it all.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.statefiles import check_integrity, prepare

__all__ = ["Batch", "DiskBuffer"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    seq INTEGER PRIMARY KEY,
    points INTEGER NOT NULL,
    lines BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Batch:
    """Lines of line protocol joined by newlines, ready for one write request."""

    seq: int
    points: int
    lines: bytes


class DiskBuffer:
    """A bounded FIFO of batches; the totals are kept in memory for cheap reads."""

    def __init__(self, path: Path | None, *, max_points: int, max_bytes: int) -> None:
        self.path = path
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.points = 0
        self.bytes = 0
        self.batches = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> int:
        """Open (creating) the file; returns the next free sequence number."""
        with self._lock:
            if self.path is not None:
                prepare(self.path)
            conn = sqlite3.connect(str(self.path) if self.path else ":memory:",
                                   isolation_level=None, check_same_thread=False)
            try:
                check_integrity(conn)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                row = conn.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), "
                                   "COALESCE(SUM(LENGTH(lines)), 0), COALESCE(MAX(seq), 0) "
                                   "FROM batch").fetchone()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self.batches, self.points, self.bytes, last = (int(v) for v in row)
            return last + 1

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def push(self, batch: Batch) -> int:
        """Keep ``batch``; returns the number of points dropped (oldest first, which may be
        ``batch`` itself when it is older than all kept) to make room."""
        with self._lock:
            conn = self._need()
            dropped = 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                keep = batch.points <= self.max_points and len(batch.lines) <= self.max_bytes
                while keep and self.batches and (
                        self.points + batch.points > self.max_points
                        or self.bytes + len(batch.lines) > self.max_bytes):
                    seq, points, size = conn.execute(
                        "SELECT seq, points, LENGTH(lines) FROM batch ORDER BY seq LIMIT 1"
                    ).fetchone()
                    if batch.seq < seq:
                        keep = False  # the new batch is the oldest: it is the one to go
                        break
                    conn.execute("DELETE FROM batch WHERE seq = ?", (seq,))
                    self._count(-1, -points, -size)
                    dropped += points
                if keep:
                    conn.execute("INSERT OR REPLACE INTO batch (seq, points, lines) "
                                 "VALUES (?, ?, ?)", (batch.seq, batch.points, batch.lines))
                    self._count(1, batch.points, len(batch.lines))
                else:
                    dropped += batch.points
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._reload_totals(conn)
                raise
            return dropped

    def oldest(self) -> Batch | None:
        with self._lock:
            row = self._need().execute(
                "SELECT seq, points, lines FROM batch ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else Batch(int(row[0]), int(row[1]), bytes(row[2]))

    def remove(self, batch: Batch) -> None:
        """Forget a batch that InfluxDB took (or refused for good)."""
        with self._lock:
            cur = self._need().execute("DELETE FROM batch WHERE seq = ?", (batch.seq,))
            if cur.rowcount:
                self._count(-1, -batch.points, -len(batch.lines))

    # -- helpers

    def _need(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the InfluxDB buffer is not open")
        return self._conn

    def _count(self, batches: int, points: int, size: int) -> None:
        self.batches += batches
        self.points += points
        self.bytes += size

    def _reload_totals(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), "
                           "COALESCE(SUM(LENGTH(lines)), 0) FROM batch").fetchone()
        self.batches, self.points, self.bytes = (int(v) for v in row)
