"""The platform's side of the gateway's HTTP server: status answers and the upstream health.

``POST /api/v1/work-orders/{id}/status`` with ``Authorization: Bearer <token>`` and a
:class:`~gateway.workorders.StatusAnswer` body moves the work order on (acknowledged, on_site,
resolved, rejected) exactly as the MQTT answer topic does. ``GET /api/v1/upstream/health`` shows
the gateway's health (outbox, links, parked messages).

These routes are served by the gateway's one HTTP server (:mod:`gateway.http_server`) next to
the console; the token is checked there before a byte of the body is read.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.errors import StatusRefused
from gateway.workorders import StatusAnswer, WorkOrder

__all__ = ["PlatformEndpoint"]

log = logging.getLogger(__name__)

StatusHandler = Callable[[str, StatusAnswer], Awaitable[WorkOrder | None]]

STATUS_PATH = "/api/v1/work-orders/{id}/status"
HEALTH_PATH = "/api/v1/upstream/health"


class PlatformEndpoint:
    """The platform's routes and their bearer token.

    Args:
        token: The bearer token the platform must send (``upstream.status_api.token``).
        on_answer: Applies an answer; returns the order after it, or None if unknown.
        health: Returns the health as JSON-able data.
    """

    #: (method, path) of the routes this endpoint owns.
    ROUTES = frozenset({("POST", STATUS_PATH), ("GET", HEALTH_PATH)})

    def __init__(self, token: str, on_answer: StatusHandler, *,
                 health: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self._token = f"Bearer {token}".encode()
        self._on_answer = on_answer
        self._health = health

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(STATUS_PATH, self._post_status)
        app.router.add_get(HEALTH_PATH, self._get_health)

    def owns(self, method: str, path: str) -> bool:
        return (method, path) in self.ROUTES

    async def authorize(self, request: web.Request) -> web.Response | None:
        """None when the request carries the platform's token, else the 401 to send."""
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
