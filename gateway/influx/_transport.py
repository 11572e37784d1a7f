"""The one place that talks to influxdb-client: a write request, and its failures mapped to
:class:`WriteError` (HTTP status, or 0 when no answer came back).

Imported only when the stage runs: influxdb-client pulls in a dozen modules a gateway without
an ``influxdb:`` section has no use for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import ClientError
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from gateway.config import InfluxConfig
from gateway.influx._errors import WriteError

__all__ = ["Transport", "open_transport"]


class Transport:
    """Writes line protocol to ``/api/v2/write`` through influxdb-client's async write API."""

    def __init__(self, cfg: InfluxConfig, api: WriteApiAsync) -> None:
        self._cfg = cfg
        self._api = api
        self._precision: Any = {"s": WritePrecision.S, "ms": WritePrecision.MS,
                                "us": WritePrecision.US, "ns": WritePrecision.NS}[cfg.precision]

    async def write(self, lines: bytes) -> None:
        """One write request; every failure becomes a :class:`WriteError`."""
        cfg = self._cfg
        try:
            async with asyncio.timeout(cfg.timeout):
                ok = await self._api.write(bucket=cfg.bucket, org=cfg.org, record=lines,
                                           write_precision=self._precision)
        except TimeoutError:
            raise WriteError(0, f"no answer from {cfg.url} within {cfg.timeout:g} s") from None
        except ApiException as exc:
            status = int(exc.status or 0)
            detail = _detail(getattr(exc, "message", None) or exc.reason)
            raise WriteError(status, f"{cfg.url} answered {status} {detail}".rstrip()) from None
        except (ClientError, OSError, InfluxDBError) as exc:
            raise WriteError(0, f"cannot reach {cfg.url}: {exc or type(exc).__name__}"
                             ) from None
        if not ok:
            raise WriteError(0, f"{cfg.url} did not confirm the write")


def _detail(message: object) -> str:
    """The server's reason in one short line: 2.x sends ``{"message": ...}`` (the client takes
    it out), 1.x ``{"error": ...}``, which reaches us as raw bytes."""
    if isinstance(message, bytes):
        text = message.decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            parsed = json.loads(text)
            text = str(parsed.get("error") or parsed.get("message") or text)
    else:
        text = "" if message is None else str(message)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.asynccontextmanager
async def open_transport(cfg: InfluxConfig) -> AsyncIterator[Transport]:
    """A client session for the stage's lifetime (one connection pool, reused)."""
    kwargs: dict[str, Any] = {"verify_ssl": cfg.verify_tls}
    if cfg.ca_file:
        kwargs["ssl_ca_cert"] = cfg.ca_file
    token = cfg.token.get_secret_value() if cfg.token is not None else ""
    # The client's own deadline is a little longer than ours, so ours (naming the cause) fires.
    async with InfluxDBClientAsync(url=cfg.url, token=token, org=cfg.org,
                                   timeout=int((cfg.timeout + 1) * 1000), enable_gzip=cfg.gzip,
                                   **kwargs) as client:
        yield Transport(cfg, client.write_api())
