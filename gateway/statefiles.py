"""The gateway's state files (the outbox, alarm journal, work-order history and users in SQLite;
small JSON files such as accounting and learned levels): private, checked, never a dead end.

* Created owner-only (directory 0700, file 0600; SQLite gives its ``-wal`` and ``-shm`` files the
  main file's mode): alarm history and work orders describe people and places.
* Checked when opened (``PRAGMA quick_check``), so damage shows at start-up, not in the middle of
  a fire alarm.
* A file that cannot be read as a database (garbage, a torn copy, damaged pages, or written by a
  newer propgw) is **moved aside**, never deleted, and a fresh file is started in its place, so
  the gateway is durable again at once instead of waiting for someone to act. The new name is
  logged at CRITICAL (:func:`open_replacing`, or by the caller) and shown in the health.

Synchronous: call from the file's worker thread (all but :func:`join_worker`, which ends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["SchemaTooNew", "check_integrity", "is_unreadable", "join_worker", "open_replacing",
           "open_wal", "prepare", "quarantine", "write_json"]

_SIDECARS = ("-wal", "-shm", "-journal")


class SchemaTooNew(sqlite3.DatabaseError):
    """The file was written by a newer propgw; this one cannot read it."""


def prepare(path: Path) -> None:
    """Create the file's directory (0700) and the file itself (0600) if they do not exist, and
    take group/other access away from an existing file and its sidecars."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for candidate in (path, *(path.with_name(path.name + s) for s in _SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            mode = candidate.stat().st_mode & 0o777
            if mode & 0o077:
                candidate.chmod(mode & 0o700)


def write_json(path: Path, data: object) -> None:
    """Replace a small JSON state file atomically, owner-only: a crash leaves the old file or
    the new one, never half of one (the file itself is never created empty first)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, separators=(",", ":"))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def open_wal(path: Path | None, *, schema: str, version: int) -> sqlite3.Connection:
    """Open (creating if need be) a WAL database with ``schema`` at ``version``; None: memory.

    The file is prepared owner-only and checked; a file from a newer propgw raises
    :class:`SchemaTooNew`, a damaged one ``sqlite3.DatabaseError`` (for :func:`quarantine`).
    ``synchronous=NORMAL``: a crash of the process loses nothing committed; callers that need
    a power cut survived switch to FULL for those commits.
    """
    if path is not None:
        prepare(path)
    name = str(path) if path is not None else ":memory:"
    conn = sqlite3.connect(name, isolation_level=None)
    try:
        _not_newer(conn, name, version)
        check_integrity(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)
        conn.execute(f"PRAGMA user_version={version}")
    except BaseException:
        conn.close()
        raise
    return conn


def _not_newer(conn: sqlite3.Connection, name: str, version: int) -> None:
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        raise SchemaTooNew(f"{name} was written by a newer propgw (schema {found}, this one "
                           f"reads {version})")


def check_integrity(conn: sqlite3.Connection) -> None:
    """Raise :class:`sqlite3.DatabaseError` unless SQLite's quick check passes."""
    rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    if rows != ["ok"]:
        found = " ".join(" ".join(str(r).split()) for r in rows)  # one log line
        raise sqlite3.DatabaseError(f"integrity check failed: {found}")


def is_unreadable(exc: BaseException) -> bool:
    """Whether ``exc`` says the *file's content* is bad (move it aside), rather than that the
    disk, the permissions or a lock are in the way (moving it would not help)."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


async def join_worker(executor: ThreadPoolExecutor | None) -> None:
    """Stop a state file's worker thread once the write it may be doing is on the disk (the
    thread cannot be interrupted). Joining blocks: it is done on a helper thread, never on the
    loop."""
    if executor is not None:
        await asyncio.to_thread(executor.shutdown, True)


def open_replacing(path: Path | None, now: float, connect: Callable[[], object], *,
                   log: logging.Logger, what: str, kept: str) -> Path | None:
    """Call ``connect`` (which opens ``path``); if the file's content cannot be read, move it
    aside, say so at CRITICAL (``what`` names the file, ``kept`` says what the moved file
    holds) and call ``connect`` again for a fresh file. Returns where the unreadable file
    went, None when it could be opened. Any other error is raised."""
    try:
        connect()
    except sqlite3.Error as exc:
        if path is None or not is_unreadable(exc):
            raise
        target = quarantine(path, now)
        log.critical("%s %s cannot be read (%s): moved to %s and replaced by a fresh file; %s "
                     "are in the moved file", what, path, exc, target, kept)
        connect()
        return target
    return None


def quarantine(path: Path, now: float) -> Path:
    """Rename ``path`` (and its sidecar files) to ``<name>.unreadable-<UTC time>``; returns the
    new path of the main file."""
    stamp = dt.datetime.fromtimestamp(now, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.unreadable-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.unreadable-{stamp}-{n}")
    path.rename(target)
    for suffix in _SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).rename(target.with_name(target.name + suffix))
    return target
