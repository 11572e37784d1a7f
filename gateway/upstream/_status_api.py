"""The gateway's small authenticated HTTP endpoint for platforms that answer over HTTP.

``POST /api/v1/work-orders/{id}/status`` with ``Authorization: Bearer <token>`` and a
:class:`~gateway.workorders.StatusAnswer` body moves the work order on (acknowledged, on_site,
resolved, rejected) exactly as the MQTT answer topic does. ``GET /api/v1/upstream/health`` shows
the outbox (pending, parked, storage errors).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from gateway.workorders import StatusAnswer, WorkOrder

__all__ = ["StatusApi"]

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024
_CLEANUP_TIMEOUT = 1.0

StatusHandler = Callable[[str, StatusAnswer], Awaitable[WorkOrder | None]]


class StatusApi:
    """Serves the status endpoint until cancelled.

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
        #: The bound port once serving (useful with ``port: 0``).
        self.port: int | None = None
        self.serving = asyncio.Event()

    async def run(self) -> None:
        """Listen and serve; until cancelled."""
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/api/v1/work-orders/{id}/status", self._post_status)
        app.router.add_get("/api/v1/upstream/health", self._get_health)
        context = None
        if self._cfg.cert_file is not None and self._cfg.key_file is not None:
            context = await asyncio.to_thread(_server_context, self._cfg.cert_file,
                                              self._cfg.key_file)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._cfg.host, self._cfg.port, ssl_context=context)
            await site.start()
            address = runner.addresses[0]
            self.port = int(address[1])
            log.info("status API listening on %s://%s:%d", "https" if context else "http",
                     self._cfg.host, self.port)
            self.serving.set()
            await asyncio.Event().wait()
        finally:
            self.serving.clear()
            # Shielded and time-boxed: close the listener even while being cancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLEANUP_TIMEOUT):
                    await asyncio.shield(runner.cleanup())

    def _authorised(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, self._token)

    async def _post_status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "missing or wrong bearer token",
                          headers={"WWW-Authenticate": 'Bearer realm="propgw"'})
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
        if not self._authorised(request):
            return _error(401, "missing or wrong bearer token",
                          headers={"WWW-Authenticate": 'Bearer realm="propgw"'})
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
