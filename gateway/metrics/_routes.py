"""``GET /metrics`` on the gateway's HTTP server, and who may scrape it.

Metrics name every device, link and target of the site: not secret, but a map for an
attacker. So the route is for the clients in ``metrics.allow`` only (loopback by default), and
``metrics.token`` adds a bearer token on top (compared in constant time). Both are checked
before the request is served; a refusal says which check failed.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from aiohttp import web

from gateway.metrics._collector import CONTENT_TYPE, GatewayCollector

__all__ = ["METRICS_PATH", "MetricsRoutes"]

METRICS_PATH = "/metrics"


class MetricsRoutes:
    """The ``/metrics`` route (a :class:`~gateway.http_server.RouteOwner`).

    Args:
        collector: Builds the exposition at each scrape.
        allow: Networks a client's address must be in.
        token: When set, the bearer token a scrape must send.
    """

    def __init__(self, collector: GatewayCollector, *,
                 allow: Sequence[IPv4Network | IPv6Network],
                 token: str | None = None) -> None:
        self._collector = collector
        self._allow = tuple(allow)
        self._token = None if token is None else f"Bearer {token}".encode()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(METRICS_PATH, self._get)

    def owns(self, method: str, path: str) -> bool:
        return path == METRICS_PATH and method in ("GET", "HEAD")

    async def authorize(self, request: web.Request) -> web.Response | None:
        """None for an allowed client with the right token (if any), else the refusal."""
        if not self.allowed(request.remote):
            return web.json_response({"error": "this address may not read /metrics (see "
                                               "metrics.allow)"}, status=403)
        if self._token is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._token):
                return web.json_response({"error": "missing or wrong bearer token"},
                                         status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="propgw"'})
        return None

    def allowed(self, remote: str | None) -> bool:
        """Whether a client at ``remote`` (an IP address) is in ``allow``."""
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self._allow)

    async def _get(self, request: web.Request) -> web.Response:
        # Built on the loop on purpose: the sources read live objects owned by this thread.
        return web.Response(body=self._collector.exposition(),
                            headers={"Content-Type": CONTENT_TYPE})
