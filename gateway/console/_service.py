"""The console's state and read side: users, sessions, the live feed, and the views it builds
from the stages' narrow queries (:class:`~gateway.console._backend.Backend`)."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.alarms import AlarmEvent, AlarmRecord, LifecycleState
from gateway.console._auth import LoginThrottle, Session, Sessions
from gateway.console._backend import Backend
from gateway.console._feed import EventHub
from gateway.console._schema import (
    AlarmView,
    DeviceView,
    PointView,
    Text,
    iso,
    location_text,
    order_json,
)
from gateway.console._users import User, UserStore, first_admin_command
from gateway.i18n import category_title
from gateway.workorders import WorkOrder

__all__ = ["BACKEND", "CONSOLE", "ConsoleService"]

log = logging.getLogger(__name__)

#: Cache of API tokens already checked (digest lookups go to SQLite otherwise).
_TOKEN_CACHE_S = 60.0


class ConsoleService:
    """Everything the console's routes share.

    Args:
        backend: The gateway as the console sees it.
        users_file: The users' SQLite file; None: no users can exist (no state folder).
    """

    def __init__(self, backend: Backend, users_file: Path | None) -> None:
        self.backend = backend
        cfg = backend.config.console
        assert cfg is not None, "the console needs a console: section"
        self.cfg = cfg
        self.hub = EventHub()
        self.sessions = Sessions(backend.clock, cfg.session_ttl)
        self.throttle = LoginThrottle(backend.clock, cfg.login)
        self.users_file = users_file
        self.users: UserStore | None = None
        self._tokens: dict[str, tuple[User, float]] = {}
        self._tokens_version: int | None = None

    # -- lifecycle

    async def open(self) -> None:
        if self.users_file is None:
            log.warning("console: no state folder, so no user file: nobody can log in. Set "
                        "state_dir (or console.users_file) in the site config, then create "
                        "the first admin with: %s (it asks for the password)",
                        first_admin_command(self.backend.config))
            return
        store = UserStore(self.users_file)
        await asyncio.to_thread(store.__enter__)
        self.users = store
        if await asyncio.to_thread(store.count) == 0:
            log.warning("console: no users yet. Create the first admin, as the system user "
                        "the gateway runs as (%s), with: %s (it asks for the password)",
                        _system_user(), first_admin_command(self.backend.config))

    async def close(self) -> None:
        store, self.users = self.users, None
        if store is not None:
            await asyncio.to_thread(store.__exit__, None, None, None)

    async def users_configured(self) -> bool:
        return self.users is not None and await asyncio.to_thread(self.users.count) > 0

    # -- authentication

    async def login(self, name: str, password: str) -> User | None:
        if self.users is None:
            return None
        return await asyncio.to_thread(self.users.verify, name, password)

    def users_version(self) -> int | None:
        """Changes whenever the user file is written (here or by ``propgw users``)."""
        if self.users_file is None:
            return None
        try:
            return os.stat(self.users_file).st_mtime_ns
        except OSError:
            return None

    async def new_session(self, user: User) -> Session:
        stamp = await asyncio.to_thread(self.users.stamp, user.name) if self.users else None
        return self.sessions.create(user, stamp=stamp, version=self.users_version())

    async def still_valid(self, session: Session) -> bool:
        """False when the session's user was deleted, or their role or password changed,
        since it logged in, wherever the change was made; the session is then ended."""
        version = self.users_version()
        if version == session.checked or self.users is None:
            return True
        stamp = await asyncio.to_thread(self.users.stamp, session.user.name)
        if stamp != session.stamp:
            self.sessions.drop(session.id)
            log.info("console: session of %s ended: the user was changed or deleted",
                     session.user.name)
            return False
        session.checked = version
        return True

    async def token_user(self, token: str) -> User | None:
        version = self.users_version()
        if version != self._tokens_version:  # a token revoked or a user changed elsewhere
            self._tokens.clear()
            self._tokens_version = version
        cached = self._tokens.get(token)
        now = time.monotonic()
        if cached is not None and now - cached[1] < _TOKEN_CACHE_S:
            return cached[0]
        if self.users is None:
            return None
        user = await asyncio.to_thread(self.users.token_user, token)
        if user is None:
            self._tokens.pop(token, None)
        else:
            if len(self._tokens) > 1000:
                self._tokens.clear()
            self._tokens[token] = (user, now)
        return user

    def forget_user(self, name: str) -> None:
        """A user was deleted or changed: end their sessions and cached tokens."""
        self.sessions.drop_user(name)
        for token in [t for t, (u, _) in self._tokens.items() if u.name == name]:
            del self._tokens[token]

    # -- read side

    def category_title(self, category: str) -> Text:
        config = self.backend.config
        return Text(zh=category_title(category, "zh-CN", config),
                    en=category_title(category, "en", config))

    def category_titles(self) -> dict[str, Text]:
        """Every category the rules can raise, the work orders name or a report can have,
        with its title."""
        config = self.backend.config
        names = ({r.category for r in config.rules} | set(config.work_orders.categories)
                 | set(config.reports.enabled()))
        return {name: self.category_title(name) for name in sorted(names)}

    def alarm_views(self) -> list[AlarmView]:
        """Alarms worth showing, life safety first, then the longest standing."""
        records = [r for r in self.backend.book.records() if _worth_showing(r)]
        records.sort(key=lambda r: (r.priority, r.activated_at))
        return [self._view(r) for r in records]

    def alarm_view(self, alarm_id: str) -> AlarmView | None:
        rec = self.backend.book.get(alarm_id)
        return None if rec is None else self._view(rec)

    def flood(self) -> dict[str, Any] | None:
        state = self.backend.book.flood
        if state.flood_id is None:
            return None
        return {"flood_id": state.flood_id, "started": iso(state.started),
                "counted": state.counted,
                "grouped": state.grouped}

    def device_views(self) -> list[DeviceView]:
        """Every configured device with its link, its state and the last reading of each
        point (one pass over the readings, not a snapshot per device)."""
        links = {dev: h for h in self.backend.links() for dev in h.devices}
        last = self.backend.readings.snapshot()["devices"]
        views = []
        for dev in self.backend.config.devices:
            health = links.get(dev.id)
            seen = last.get(dev.id)
            points = []
            for p in [*dev.points, *dev.derived]:
                reading = seen["last"].get(p.name) if seen is not None else None
                points.append(PointView(
                    name=p.name, unit=getattr(p, "unit", None),
                    value=reading["value"] if reading else None,
                    quality=reading["quality"] if reading else None,
                    ts=iso(reading["received_ts"]) if reading else None))
            views.append(DeviceView(
                id=dev.id, name=dev.name or dev.id, kind=dev.kind, driver=dev.driver,
                link=health.link if health else None,
                link_state=health.state if health else None,
                state=health.devices.get(dev.id) if health else None,
                location=dev.location.model_dump(), location_text=location_text(dev.location),
                points=points,
                counters=dict(health.counters) if health else {},
                readings=seen["readings"] if seen else 0,
                last_reading=iso(seen["last_received_ts"]) if seen else None))
        return views

    # -- live feed

    def alarm_event(self, event: AlarmEvent) -> None:
        """Every alarm event, from the alarm engine's listener: the board's live update."""
        view = self.alarm_view(event.alarm_id)
        self.hub.publish("alarm", {
            "alarm_id": event.alarm_id, "transition": event.transition.value
            if event.transition else None, "actor": event.actor, "reason": event.reason,
            "alarm": view.model_dump(mode="json") if view is not None else None})

    def work_order(self, order: WorkOrder) -> None:
        self.hub.publish("work_order", order_json(order))

    def _view(self, rec: AlarmRecord) -> AlarmView:
        return AlarmView.build(rec, title=self.category_title(rec.category),
                               order=self.backend.desk.order_for_alarm(rec.alarm_id))


def _system_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _worth_showing(rec: AlarmRecord) -> bool:
    return rec.lifecycle is not LifecycleState.NORMAL or rec.hidden or rec.condition


#: App keys: how routes reach the shared state.
BACKEND = web.AppKey("backend", Backend)
CONSOLE = web.AppKey("console", ConsoleService)
