"""A tiny HTTP control API to poke simulators by hand during commissioning.

``GET /`` lists every device with its state and actions; ``POST /devices/<id>/<action>`` with
a JSON object of parameters runs an action::

    curl -s localhost:8081/ | python3 -m json.tool
    curl -s -X POST localhost:8081/devices/E1/stop_between_floors
    curl -s -X POST localhost:8081/devices/E1/mode -d '{"mode": "inspection"}'

Loopback only by default; there is no authentication because it only drives simulators.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from simulators.base import ActionError, Simulator

__all__ = ["ControlServer"]

_MAX_BODY = 64 * 1024


class ControlServer:
    """Serves the control API for ``sims`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, sims: Mapping[str, Simulator], *, host: str = "127.0.0.1", port: int = 0,
                 apply: Callable[[str, str, dict[str, Any]], str] | None = None) -> None:
        self.sims = sims
        self.host, self.port = host, port
        self._apply = apply or self._direct_apply
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _direct_apply(self, device: str, action: str, params: dict[str, Any]) -> str:
        sim = self.sims.get(device)
        if sim is None:
            raise ActionError(f"no device {device!r}")
        return sim.apply(action, params)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                status, body = await self._respond(reader)
        except (TimeoutError, ValueError, ConnectionError):
            status, body = 400, {"error": "bad request"}
        payload = json.dumps(body, ensure_ascii=False, indent=1).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        with contextlib.suppress(ConnectionError):
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; "
                         f"charset=utf-8\r\nContent-Length: {len(payload)}\r\n"
                         "Connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request = (await reader.readline()).decode("latin-1").split()
        if len(request) < 2:
            raise ValueError("empty request")
        method, path = request[0], request[1]
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > _MAX_BODY:
            return 400, {"error": "body too large"}
        raw = await reader.readexactly(length) if length else b""
        if method == "GET" and path == "/":
            return 200, {"devices": {name: {"kind": sim.kind, "state": sim.snapshot(),
                                            "actions": {a.name: a.help for a in sim.actions()}}
                                     for name, sim in self.sims.items()}}
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 3 or parts[0] != "devices":
            return 404, {"error": "use GET / or POST /devices/<id>/<action>"}
        try:
            params = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return 400, {"error": f"the body is not JSON: {exc}"}
        if not isinstance(params, dict):
            return 400, {"error": "the body must be a JSON object of parameters"}
        try:
            return 200, {"result": self._apply(parts[1], parts[2], params)}
        except ActionError as exc:
            return 400, {"error": str(exc)}
