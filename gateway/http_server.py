"""The gateway's one HTTP server: console, REST API, the platform's status answers, /healthz.

One listener, one set of limits (:class:`~gateway.http_guard.GuardedHttpServer`: connection cap,
head and body deadlines, sizes), run as a supervised stage. Each group of routes says who may
call it, and that is checked before a byte of a request body is read:

* ``/healthz``: anyone (a load balancer, a monitoring probe): ``ok``/``degraded`` answer 200,
  ``failing`` 503, with the reasons;
* the platform's routes (:class:`~gateway.upstream.PlatformEndpoint`): its bearer token;
* the console (:class:`~gateway.console.ConsoleRoutes`): a logged-in user with the role the
  route needs, or an API token;
* ``/metrics`` (:class:`~gateway.metrics.MetricsRoutes`): a client in ``metrics.allow``, with
  ``metrics.token`` when one is set.

A request for a route nobody owns is refused (403), so a route added without an entry in an
access table is never open by accident.

Where it listens: ``console.host``/``port`` when the console is on, else
``upstream.status_api.host``/``port``, else ``metrics.host``/``port``; TLS when a certificate
is configured.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from gateway.config import GatewayConfig, HttpServerLimits, StatusApiConfig
from gateway.health import HealthReport
from gateway.http_guard import GuardedHttpServer
from gateway.upstream import PlatformEndpoint
from gateway.upstream._status_api import StatusHandler

__all__ = ["Listen", "RouteOwner", "WebServer", "listen_settings", "platform_server"]

log = logging.getLogger(__name__)

HEALTHZ = "/healthz"


class RouteOwner(Protocol):
    """A group of routes and who may call them (console, platform)."""

    def add_routes(self, app: web.Application) -> None:
        """Add the group's routes (and middlewares) to ``app``."""

    def owns(self, method: str, path: str) -> bool:
        """Whether (method, route path) is one of the group's."""

    async def authorize(self, request: web.Request) -> web.Response | None:
        """None to let the request through, else the answer to send instead."""


@dataclass(frozen=True)
class Listen:
    """Where and how the server listens."""

    name: str
    host: str
    port: int
    limits: HttpServerLimits
    cert_file: Path | None = None
    key_file: Path | None = None


def listen_settings(config: GatewayConfig) -> Listen | None:
    """The listener the config asks for, or None when nothing needs an HTTP server."""
    console = config.console if config.console is not None and config.console.enabled else None
    status = config.upstream.status_api if config.upstream is not None else None
    if console is not None:
        return Listen("console", console.host, console.port, console.limits, console.cert_file,
                      console.key_file)
    if status is not None:
        return Listen("status API", status.host, status.port, status.limits, status.cert_file,
                      status.key_file)
    metrics = config.metrics if config.metrics is not None and config.metrics.enabled else None
    if metrics is not None:
        return Listen("metrics", metrics.host, metrics.port, metrics.limits)
    return None


class WebServer:
    """Serves every route group on one listener until cancelled.

    Args:
        listen: Address, port, limits and TLS.
        owners: Route groups; each adds its routes to the app now.
        health: The gateway's health, for ``/healthz``.
        on_start: Awaited before listening (open files the routes need).
        on_stop: Awaited after the listener closed.
    """

    def __init__(self, listen: Listen, *, owners: list[RouteOwner],
                 health: Callable[[], HealthReport] | None = None,
                 on_start: Callable[[], Awaitable[None]] | None = None,
                 on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
        self.listen = listen
        self._owners = list(owners)
        self._health = health
        self._on_start, self._on_stop = on_start, on_stop
        self._server = GuardedHttpServer(name=listen.name, host=listen.host, port=listen.port,
                                         limits=listen.limits, authorize=self._authorize)
        self.app = self._server.app
        self.app.router.add_get(HEALTHZ, self._healthz)
        for owner in self._owners:
            owner.add_routes(self.app)

    @property
    def port(self) -> int | None:
        """The bound port once serving (useful with ``port: 0``)."""
        return self._server.port

    @property
    def serving(self) -> asyncio.Event:
        return self._server.serving

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    async def run(self) -> None:
        """Listen and serve; until cancelled."""
        if self.listen.cert_file is not None and self.listen.key_file is not None:
            self._server.ssl_context = await asyncio.to_thread(
                _server_context, self.listen.cert_file, self.listen.key_file)
        if self._on_start is not None:
            await self._on_start()
        try:
            await self._server.run()
        finally:
            if self._on_stop is not None:
                await asyncio.shield(self._on_stop())

    async def _authorize(self, request: web.Request) -> web.Response | None:
        info = request.match_info
        if isinstance(info, MatchInfoError):
            return None  # aiohttp answers 404 / 405 itself
        resource = info.route.resource
        path = resource.canonical if resource is not None else ""
        if path == HEALTHZ:
            return None
        for owner in self._owners:
            if owner.owns(request.method, path):
                return await owner.authorize(request)
        return web.json_response({"error": "no access to this route"}, status=403)

    async def _healthz(self, request: web.Request) -> web.Response:
        if self._health is None:
            return web.json_response({"status": "ok", "ok": True, "reasons": []})
        report = self._health()
        body = {"status": report.status, "ok": report.ok,
                "reasons": [{"code": r.code, "message": r.message, "fatal": r.fatal}
                            for r in report.reasons]}
        return web.json_response(body, status=503 if report.failing else 200)


def platform_server(cfg: StatusApiConfig, on_answer: StatusHandler, *,
                    health: Callable[[], Mapping[str, Any]] | None = None) -> WebServer:
    """A server with only the platform's routes, listening as ``upstream.status_api`` says."""
    listen = Listen("status API", cfg.host, cfg.port, cfg.limits, cfg.cert_file, cfg.key_file)
    return WebServer(listen, owners=[PlatformEndpoint(cfg.token.get_secret_value(), on_answer,
                                                      health=health)])


def _server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_file), str(key_file))
    return context
