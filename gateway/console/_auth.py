"""Who is asking, and may they: sessions, CSRF, login throttling, and the route table.

* **Browser sessions**: ``POST /api/v1/session`` with a name and password sets a random,
  ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` when served over TLS). Sessions live in
  memory (a restart logs everyone out) and end after ``console.session_ttl`` without activity.
* **CSRF**: a request authenticated by the cookie that changes anything must carry the
  session's CSRF token in ``X-CSRF-Token`` (the page reads it from ``GET /api/v1/session``).
  SameSite=Strict already keeps other sites' forms out; the token also covers old browsers.
* **API tokens** (``Authorization: Bearer pgw_...``) act as their user; no CSRF (a browser
  never adds them by itself).
* **Login throttling**: after ``console.login.max_failures`` failures within ``window`` for a
  user name or a client address, further attempts are refused with 429 for ``lockout``.
* **The route table** says, per route, who may call it: public, the platform's status token,
  or at least a role. It is checked before a byte of the request body is read.

Everything here runs on the monotonic clock of the gateway.
"""

from __future__ import annotations

import collections
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from gateway.clock import Clock
from gateway.config import LoginLimits
from gateway.console._users import Role, User

__all__ = ["COOKIE", "CSRF_HEADER", "SESSION", "USER", "Access", "LoginThrottle", "Session",
           "Sessions"]

COOKIE = "propgw_session"
CSRF_HEADER = "X-CSRF-Token"
#: Sessions kept at most; the least recently used goes first.
_MAX_SESSIONS = 1000

#: Who may call a route: anyone, the platform (status token), or a user with at least a role.
Access = Literal["public", "platform"] | Role


@dataclass
class Session:
    id: str
    user: User
    csrf: str
    last_seen: float


class Sessions:
    """Logged-in browsers, in memory."""

    def __init__(self, clock: Clock, ttl: float) -> None:
        self._clock = clock
        self._ttl = ttl
        self._by_id: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def create(self, user: User) -> Session:
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32),
                          self._clock.monotonic())
        self._by_id[session.id] = session
        while len(self._by_id) > _MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id (its expiry is pushed back), or None."""
        session = self._by_id.get(session_id)
        now = self._clock.monotonic()
        if session is None:
            return None
        if now - session.last_seen > self._ttl:
            del self._by_id[session_id]
            return None
        session.last_seen = now
        self._by_id.move_to_end(session_id)
        return session

    def drop(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def drop_user(self, name: str) -> int:
        """End every session of a user (deleted, or their password changed)."""
        gone = [sid for sid, s in self._by_id.items() if s.user.name == name]
        for sid in gone:
            del self._by_id[sid]
        return len(gone)

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass
class LoginThrottle:
    """Counts failed logins per key (``user:<name>``, ``addr:<ip>``) on the monotonic clock."""

    clock: Clock
    limits: LoginLimits
    _failures: dict[str, collections.deque[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def retry_after(self, keys: list[str]) -> float | None:
        """Seconds until these keys may try again, or None when they may now."""
        now = self.clock.monotonic()
        waits = [until - now for k in keys if (until := self._locked_until.get(k, 0.0)) > now]
        return max(waits) if waits else None

    def failed(self, keys: list[str]) -> None:
        now = self.clock.monotonic()
        for key in keys:
            times = self._failures.setdefault(key, collections.deque())
            times.append(now)
            while times and now - times[0] > self.limits.window:
                times.popleft()
            if len(times) >= self.limits.max_failures:
                self._locked_until[key] = now + self.limits.lockout
                times.clear()
        self._forget_old(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _forget_old(self, now: float) -> None:
        # Bounded memory under a spray of names or addresses.
        if len(self._failures) > 10_000:
            for key in [k for k, t in self._failures.items()
                        if not t or now - t[-1] > self.limits.window]:
                del self._failures[key]
        if len(self._locked_until) > 10_000:
            for key in [k for k, u in self._locked_until.items() if u <= now]:
                del self._locked_until[key]


#: Who is calling: set on every request a user is authorised for.
USER = web.RequestKey("user", User)
#: The browser session, when the user came with the cookie (not with an API token).
SESSION = web.RequestKey("session", Session)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())
