"""The console's routes on the gateway's HTTP server, and who may call each.

Besides the REST API (:mod:`gateway.console._views`, :mod:`gateway.console._access`):

* ``GET /`` and ``/static/...``: the page and its assets, all served from the gateway (no CDN,
  no web fonts): it works with no internet. A Content-Security-Policy keeps the page from
  loading anything from anywhere else.
* ``GET /api/v1/events``: the live feed (server-sent events, :mod:`gateway.console._feed`).
* ``GET /api/v1/health``: the full health report.
* ``GET /api/v1/openapi.json``: the API described, generated from the route definitions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp_pydantic.oas.pydantic_schema_to_oas import add_or_replace_translater
from aiohttp_pydantic.oas.view import generate_oas

from gateway import __version__
from gateway.console._access import ACCESS_ROUTES, ACCESS_VIEWS
from gateway.console._auth import (
    COOKIE,
    CSRF_HEADER,
    SESSION,
    USER,
    Access,
    Session,
    same_secret,
)
from gateway.console._service import BACKEND, CONSOLE, ConsoleService
from gateway.console._users import TOKEN_PREFIX
from gateway.console._views import ROUTES, VIEWS

__all__ = ["ConsoleRoutes"]

log = logging.getLogger(__name__)

EVENTS = "/api/v1/events"
HEALTH = "/api/v1/health"
OPENAPI = "/api/v1/openapi.json"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_KEEPALIVE = 15
#: Idle ticks between checks that the stream's session is still valid.
_RECHECK = 5
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; media-src 'self' data:; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def static_dir() -> Path:
    """Where the page and its assets are (inside the installed package)."""
    return Path(str(resources.files("gateway.console") / "static"))


class ConsoleRoutes:
    """Adds the console to the gateway's HTTP server (a :class:`gateway.http_server.RouteOwner`).

    Args:
        service: The console's shared state.
    """

    def __init__(self, service: ConsoleService) -> None:
        self.service = service
        self._access: dict[tuple[str, str], Access] = {
            **ROUTES, **ACCESS_ROUTES,
            ("GET", EVENTS): "viewer", ("GET", HEALTH): "viewer", ("GET", OPENAPI): "public",
            ("GET", "/"): "public", ("HEAD", "/"): "public",
        }
        self._openapi: bytes = b"{}"

    def add_routes(self, app: web.Application) -> None:
        app[CONSOLE] = self.service
        app[BACKEND] = self.service.backend
        app.middlewares.append(_security_headers)
        for path, view in [*VIEWS, *ACCESS_VIEWS]:
            app.router.add_view(path, view)
        app.router.add_get(EVENTS, self._events)
        app.router.add_get(HEALTH, self._health)
        app.router.add_get(OPENAPI, self._spec)
        app.router.add_get("/", self._index)
        static = static_dir()
        app.router.add_static("/static/", static, name="static", follow_symlinks=False,
                              append_version=False)
        self._openapi = json.dumps(_spec(app)).encode()

    def owns(self, method: str, path: str) -> bool:
        return (method, path) in self._access or path.startswith("/static")

    async def authorize(self, request: web.Request) -> web.Response | None:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else ""
        if path.startswith("/static"):
            return None
        access = self._access.get((request.method, path))
        if access is None:
            return _refuse(403, "no access to this route")
        if access == "public":
            return None
        if access == "platform":
            return _refuse(403, "platform route")
        user, session = None, None
        auth = request.headers.get("Authorization", "")
        if auth.startswith(f"Bearer {TOKEN_PREFIX}"):
            user = await self.service.token_user(auth.removeprefix("Bearer "))
        elif (cookie := request.cookies.get(COOKIE)) is not None:
            session = self.service.sessions.get(cookie)
            if session is not None and not await self.service.still_valid(session):
                session = None
            if session is not None:
                user = session.user
                if request.method not in _SAFE and not same_secret(
                        request.headers.get(CSRF_HEADER, ""), session.csrf):
                    return _refuse(403, f"missing or wrong {CSRF_HEADER}")
        if user is None:
            return _refuse(401, "log in first (or send an API token)")
        if not user.can(access):
            return _refuse(403, f"this needs the role {access} or above; {user.name} is "
                                f"{user.role}")
        request[USER] = user
        if session is not None:
            request[SESSION] = session
        return None

    async def _alive(self, session: Session) -> bool:
        current = self.service.sessions.get(session.id)
        return current is session and await self.service.still_valid(session)

    # -- routes that are not part of the JSON API

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(static_dir() / "index.html",
                                headers={"Cache-Control": "no-cache"})

    async def _spec(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.backend.health().to_json())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        idle = 0
        try:
            # An id without data sets the browser's Last-Event-ID without firing an event.
            start = last or self.service.hub.current_id
            await response.write(f"retry: 1000\nid: {start}\n\n".encode())
            # Ticks every second when idle: a browser that left is noticed within one (aiohttp
            # does not cancel a handler whose client went away), and a comment every
            # _KEEPALIVE ticks keeps proxies from closing a quiet stream.
            session = request.get(SESSION)
            async for event in self.service.hub.stream(last, heartbeat=1.0):
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                # A user deleted or changed meanwhile stops receiving within a few seconds
                # (the reconnect then asks them to log in again).
                if session is not None and idle % _RECHECK == 0 and not await self._alive(
                        session):
                    break
                if event is not None:
                    idle = 0
                    await response.write(event.encode())
                elif (idle := idle + 1) % _KEEPALIVE == 0:
                    await response.write(b": keep-alive\n\n")
        except ConnectionError:
            pass  # the browser went away; it reconnects with Last-Event-ID
        return response


@web.middleware
async def _security_headers(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        # The console counts windows down on the gateway's clock, not the PC's (clock.js).
        response.headers["X-Gateway-Time"] = str(int(request.app[BACKEND].clock.time() * 1000))
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/static/"):
        # Revalidate (a cheap 304) rather than guess: after an upgrade every browser in the
        # control room must load the new page's modules, not a cached mix of old and new.
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _to_oas_3_0(schema: Any) -> None:
    """Turn pydantic's JSON Schema (draft 2020-12) into OpenAPI 3.0 in place, everywhere in it.

    aiohttp-pydantic's own translator handles only top-level properties and fails on an
    optional model (``anyOf: [{$ref}, {type: null}]``): 3.0 has no ``null`` type, only
    ``nullable``, which a ``$ref`` cannot carry except through ``allOf``.
    """
    if isinstance(schema, list):
        for item in schema:
            _to_oas_3_0(item)
        return
    if not isinstance(schema, dict):
        return
    for value in schema.values():
        _to_oas_3_0(value)
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = schema.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # 2020-12: a number; OpenAPI 3.0: the limit, and a flag saying it is excluded.
            schema[limit], schema[bound] = value, True
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if not isinstance(options, list):
            continue
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == len(options):
            continue
        schema["nullable"] = True
        if schema.get("default", ...) is None:
            del schema["default"]
        if len(rest) == 1:
            del schema[key]
            only = rest[0]
            if "$ref" in only:
                schema["allOf"] = [only]
            else:
                schema.update(only)
        else:
            schema[key] = rest


add_or_replace_translater("3.0.0", _to_oas_3_0)


def _spec(app: web.Application) -> dict[str, Any]:
    spec: dict[str, Any] = generate_oas([app], version_spec=__version__,
                                        title_spec="propgw console API")
    spec.setdefault("components", {})["securitySchemes"] = {
        "session": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                    "description": "From POST /api/v1/session; changes also need "
                                   f"{CSRF_HEADER}."},
        "token": {"type": "http", "scheme": "bearer",
                  "description": "An API token from `propgw users token`."},
    }
    spec["security"] = [{"session": []}, {"token": []}]
    return spec
