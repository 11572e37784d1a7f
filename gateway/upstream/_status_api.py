"""The gateway's small authenticated HTTP endpoint for platforms that answer over HTTP.

``POST /api/v1/work-orders/{id}/status`` with ``Authorization: Bearer <token>`` and a
:class:`~gateway.workorders.StatusAnswer` body moves the work order on (acknowledged, on_site,
resolved, rejected) exactly as the MQTT answer topic does. ``GET /api/v1/upstream/health`` shows
the outbox (pending, parked, storage errors).

The token is checked before a byte of the body is read, and connections, deadlines and sizes
are bounded (``upstream.status_api.limits``), so clients that are slow, many or oversized cannot
take the file descriptors that outgoing work orders need.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.config import StatusApiConfig
from gateway.errors import StatusRefused
from gateway.http_guard import GuardedHttpServer
from gateway.workorders import StatusAnswer, WorkOrder

__all__ = ["StatusApi"]

log = logging.getLogger(__name__)

StatusHandler = Callable[[str, StatusAnswer], Awaitable[WorkOrder | None]]


class StatusApi:
    """Serves the status endpoint until cancelled, within ``cfg.limits``
    (:class:`~gateway.http_guard.GuardedHttpServer`).

    Args:
        cfg: ``upstream.status_api``.
        on_answer: Applies an answer; returns the order after it, or None if unknown.
        health: Returns the outbox health as JSON-able data.
    """

    def __init__(self, cfg: StatusApiConfig, on_answer: StatusHandler, *,
                 health: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self._cfg = cfg
        self._on_answer = on_answer
        self._health = health
        self._token = f"Bearer {cfg.token.get_secret_value()}".encode()
        self._server = GuardedHttpServer(name="status API", host=cfg.host, port=cfg.port,
                                         limits=cfg.limits, authorize=self._authorise)
        self._server.app.router.add_post("/api/v1/work-orders/{id}/status", self._post_status)
        self._server.app.router.add_get("/api/v1/upstream/health", self._get_health)

    @property
    def port(self) -> int | None:
        """The bound port once serving (useful with ``port: 0``)."""
        return self._server.port

    @property
    def serving(self) -> asyncio.Event:
        """Set while listening."""
        return self._server.serving

    @property
    def open_connections(self) -> int:
        """Connections currently held."""
        return self._server.open_connections

    async def run(self) -> None:
        """Listen and serve; until cancelled."""
        if self._cfg.cert_file is not None and self._cfg.key_file is not None:
            self._server.ssl_context = await asyncio.to_thread(
                _server_context, self._cfg.cert_file, self._cfg.key_file)
        await self._server.run()

    def _authorise(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, self._token):
            return None
        return _error(401, "missing or wrong bearer token",
                      headers={"WWW-Authenticate": 'Bearer realm="propgw"'})

    async def _post_status(self, request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        try:
            answer = StatusAnswer.model_validate_json(await request.read())
        except ValidationError as exc:
            return _error(400, "invalid status answer", details=json.loads(exc.json(
                include_url=False, include_input=False)))
        if answer.id is not None and answer.id != order_id:
            return _error(400, f"body names work order {answer.id}, the URL {order_id}")
        try:
            order = await self._on_answer(order_id, answer)
        except StatusRefused as exc:
            return _error(400, exc.reason)
        if order is None:
            return _error(404, f"no open work order {order_id}")
        return web.json_response(text=order.model_dump_json())

    async def _get_health(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self._health()) if self._health else {})


def _error(status: int, message: str, *, details: Any = None,
           headers: Mapping[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status, headers=headers)


def _server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert_file), str(key_file))
    return context
