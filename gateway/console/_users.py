"""The console's users and API tokens, in a small SQLite file.

* Passwords are stored as argon2id hashes (argon2-cffi; m=19 MiB, t=2, p=1: the OWASP baseline,
  about 25 ms per check on a desktop and well under a second on a Raspberry Pi, with a memory
  cost the Pi can afford next to the gateway). A hash made with older parameters is upgraded
  at the next successful login.
* API tokens (for ``propgw alarms ...`` and scripts) are random, shown once, and stored as
  SHA-256 digests: they are long and random, so a slow hash buys nothing.
* Roles, from least to most: ``viewer`` (sees everything, acts on nothing), ``operator`` (acts
  on alarms), ``engineer`` (also takes alarms out of service and back), ``admin`` (also
  manages users).

Synchronous: the CLI calls it directly; the server calls it in a worker thread. The file is
created owner-only (:mod:`gateway.statefiles`).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.config import GatewayConfig, durable_state_dir
from gateway.statefiles import check_integrity, prepare

__all__ = ["MIN_PASSWORD", "ROLES", "Role", "TokenInfo", "User", "UserError", "UserStore",
           "can", "first_admin_command", "users_path"]

Role = Literal["viewer", "operator", "engineer", "admin"]
#: Least to most.
ROLES: tuple[Role, ...] = ("viewer", "operator", "engineer", "admin")
MIN_PASSWORD = 8
TOKEN_PREFIX = "pgw_"

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class UserError(ValueError):
    """A user operation that cannot be done as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role

    def can(self, needed: Role) -> bool:
        return can(self.role, needed)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as listed: whose, what for, since when (epoch seconds)."""

    name: str
    label: str
    created: float


def can(role: Role, needed: Role) -> bool:
    """Whether ``role`` is at least ``needed``."""
    return ROLES.index(role) >= ROLES.index(needed)


def users_path(config: GatewayConfig) -> Path | None:
    """Where the console's users live: ``console.users_file`` (relative to ``state_dir``),
    else ``users-<site>-<gateway>.sqlite3`` in the durable state folder; None: nowhere durable
    was configured (the console then has no users and says how to add them)."""
    configured = config.console.users_file if config.console is not None else None
    if configured is not None:
        return configured if configured.is_absolute() else config.state_dir / configured
    state_dir = durable_state_dir(config)
    if state_dir is None:
        return None
    return state_dir / f"users-{config.site.id}-{config.site.gateway_id}.sqlite3"


def first_admin_command(config: GatewayConfig, env: Mapping[str, str] | None = None) -> str:
    """The ``propgw users add`` line that creates the first admin in the user file this
    gateway uses. A shell has no ``$STATE_DIRECTORY`` (systemd sets it for the service only),
    so when the user file's folder comes from there, the line sets it."""
    command = "propgw users add -c <site.yaml> <name> --role admin"
    env = os.environ if env is None else env
    configured = config.console.users_file if config.console is not None else None
    if (configured is None and "state_dir" not in config.model_fields_set
            and env.get("STATE_DIRECTORY")):
        state_dir = durable_state_dir(config, env)
        command = f"STATE_DIRECTORY={state_dir} {command}"
    return command


class UserStore:
    """Users and tokens in ``path``; use as a context manager (opens and closes the file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> UserStore:
        prepare(self.path)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                               timeout=5.0)
        try:
            check_integrity(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- users

    def add(self, name: str, role: Role, password: str) -> User:
        """Create a user.

        Raises:
            UserError: bad name, unknown role, short password, or the name is taken.
        """
        _check_name(name)
        _check_role(role)
        _check_password(password)
        now = time.time()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user {name!r} exists already")
            conn.execute("INSERT INTO users (name, role, hash, created, updated) "
                         "VALUES (?, ?, ?, ?, ?)", (name, role, _HASHER.hash(password), now, now))
        return User(name, role)

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        with self._tx() as conn:
            self._must_exist(conn, name)
            conn.execute("UPDATE users SET hash = ?, updated = ? WHERE name = ?",
                         (_HASHER.hash(password), time.time(), name))

    def set_role(self, name: str, role: Role) -> None:
        _check_role(role)
        with self._tx() as conn:
            self._must_exist(conn, name)
            if role != "admin":
                self._keep_an_admin(conn, name)
            conn.execute("UPDATE users SET role = ?, updated = ? WHERE name = ?",
                         (role, time.time(), name))

    def delete(self, name: str) -> None:
        with self._tx() as conn:
            self._must_exist(conn, name)
            self._keep_an_admin(conn, name)
            conn.execute("DELETE FROM users WHERE name = ?", (name,))

    def get(self, name: str) -> User | None:
        with self._tx() as conn:
            row = conn.execute("SELECT name, role FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else User(row[0], row[1])

    def list(self) -> list[User]:
        with self._tx() as conn:
            rows = conn.execute("SELECT name, role FROM users ORDER BY name").fetchall()
        return [User(n, r) for n, r in rows]

    def count(self) -> int:
        with self._tx() as conn:
            return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])

    def verify(self, name: str, password: str) -> User | None:
        """The user, if ``password`` is theirs; otherwise None (also for unknown names)."""
        with self._tx() as conn:
            row = conn.execute("SELECT role, hash FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            # Spend the same time as for a real user, so timing does not tell names apart.
            with contextlib.suppress(VerificationError, InvalidHashError):
                _HASHER.verify(_dummy_hash(), password)
            return None
        role, stored = row
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if _HASHER.check_needs_rehash(stored):
            with self._tx() as conn:
                conn.execute("UPDATE users SET hash = ? WHERE name = ?",
                             (_HASHER.hash(password), name))
        return User(name, role)

    # -- tokens

    def issue_token(self, name: str, label: str = "") -> str:
        """A new API token for ``name``; shown once, only its digest is kept."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._tx() as conn:
            self._must_exist(conn, name)
            conn.execute("INSERT INTO tokens (digest, name, label, created) VALUES (?, ?, ?, ?)",
                         (_digest(token), name, label, time.time()))
        return token

    def revoke_tokens(self, name: str, label: str | None = None) -> int:
        """End ``name``'s API tokens (only those labelled ``label``, if given); how many."""
        with self._tx() as conn:
            if label is None:
                cursor = conn.execute("DELETE FROM tokens WHERE name = ?", (name,))
            else:
                cursor = conn.execute("DELETE FROM tokens WHERE name = ? AND label = ?",
                                      (name, label))
            return int(cursor.rowcount)

    def tokens(self) -> builtins.list[TokenInfo]:
        """Every API token's owner, label and creation time (never the token itself)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT name, label, created FROM tokens "
                                "ORDER BY name, created").fetchall()
        return [TokenInfo(n, label, created) for n, label, created in rows]

    def token_user(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = _digest(token)
        with self._tx() as conn:
            row = conn.execute("SELECT u.name, u.role, t.digest FROM tokens t JOIN users u "
                               "ON u.name = t.name WHERE t.digest = ?", (digest,)).fetchone()
        if row is None or not hmac.compare_digest(row[2], digest):
            return None
        return User(row[0], row[1])

    # -- helpers

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise UserError(f"the user file {self.path} is not open")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _must_exist(conn: sqlite3.Connection, name: str) -> None:
        if not conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise UserError(f"no user {name!r}")

    @staticmethod
    def _keep_an_admin(conn: sqlite3.Connection, name: str) -> None:
        admins = [r[0] for r in conn.execute("SELECT name FROM users WHERE role = 'admin'")]
        if admins == [name]:
            raise UserError(f"{name!r} is the last admin; make someone else admin first")


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise UserError("a user name is 1-64 characters: letters, digits, '.', '_', '-', '@'")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("a password has at most 1024 characters")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_hex(16))
