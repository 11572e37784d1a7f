"""A real InfluxDB 1.6.7 (Debian 12's ``influxdb``) for the tests, and the v2 write shim.

Debian ships no InfluxDB 2.x. Its 1.6.7 takes line protocol at ``/write?db=`` but answers 404
at ``/api/v2/write`` (the compatibility endpoint came with 1.8), so :class:`V2Shim` listens on
its own loopback port and turns ``POST /api/v2/write?bucket=B&precision=P`` into
``POST /write?db=B&precision=P`` with the body untouched: the gateway's real client code path
runs, and a real storage engine parses and stores every line. The shim also counts the lines
that InfluxDB accepted (to prove "exactly once") and can be told to answer a status of its own
(to exercise 401/400 handling).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support import end_process, free_port

__all__ = ["InfluxD", "V2Shim", "influxd_binary"]

_V1_PRECISION = {"s": "s", "ms": "ms", "us": "u", "ns": "ns"}


def influxd_binary() -> str | None:
    return shutil.which("influxd") or ("/usr/bin/influxd" if Path("/usr/bin/influxd").exists()
                                       else None)


class InfluxD:
    """A throw-away influxd on a free loopback port; can be stopped and started again with its
    data kept (same directories, same port)."""

    def __init__(self, workdir: Path) -> None:
        binary = influxd_binary()
        if binary is None:
            raise RuntimeError("influxd is not installed; scripts/setup.sh --test installs "
                               "Debian's influxdb")
        self.binary = binary
        self.port = free_port()
        self.rpc_port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "influxdb.conf"
        self.log = workdir / "influxd.log"
        self.conf.write_text(f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = false
  log-enabled = false
[subscriber]
  enabled = false
[[graphite]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
[[udp]]
  enabled = false
[continuous_queries]
  enabled = false
""")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([self.binary, "-config", str(self.conf)],
                                          stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:
                    if resp.status == 204:
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"influxd did not start on port {self.port}:\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            end_process(self._proc)
        self._proc = None

    def query(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """InfluxQL through ``/query``; the series of the first statement (blocking, short)."""
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as resp:
            body = json.loads(resp.read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL {q!r}: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def create_db(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Every row of the query as dicts (tags merged in)."""
        out = []
        for s in self.query(q, db):
            for values in s["values"]:
                out.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
        return out


@dataclass
class V2Shim:
    """``/api/v2/write`` in front of a 1.x ``/write`` (test only)."""

    backend: str
    port: int = field(default_factory=free_port)
    #: Lines InfluxDB answered 2xx for (the shim saw them stored).
    accepted_lines: list[bytes] = field(default_factory=list)
    #: Every status answered, in order.
    statuses: list[int] = field(default_factory=list)
    #: Content-Encoding of every request ("" for none).
    encodings: list[str] = field(default_factory=list)
    #: When set, answer this (status, JSON message) instead of forwarding.
    force: tuple[int, str] | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # auto_decompress=False: a gzip body is passed on as it came (InfluxDB unpacks it).
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _write(self, request: web.Request) -> web.Response:
        body = await request.read()
        encoding = request.headers.get("Content-Encoding", "")
        self.encodings.append(encoding)
        if self.force is not None:
            status, message = self.force
            self.statuses.append(status)
            return web.json_response({"code": "forced", "message": message}, status=status)
        bucket = request.query.get("bucket", "")
        db, _, rp = bucket.partition("/")
        params = {"db": db, "precision": _V1_PRECISION[request.query.get("precision", "ns")]}
        if rp:
            params["rp"] = rp
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "content-encoding")}
        assert self._session is not None
        try:
            async with self._session.post(f"{self.backend}/write", params=params, data=body,
                                          headers=headers) as resp:
                text = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.statuses.append(503)
            return web.json_response({"code": "unavailable", "message": str(exc)}, status=503)
        if 200 <= status < 300:
            plain = gzip.decompress(body) if encoding == "gzip" else body
            self.accepted_lines += [line for line in plain.split(b"\n") if line]
        self.statuses.append(status)
        return web.Response(status=status, body=text,
                            content_type="application/json" if text else None)


#: The database the fixtures create (bucket ``history`` through the shim).
INFLUX_DB = "history"


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxD]:
    """A real influxd for this test only, with :data:`INFLUX_DB` created."""
    server = InfluxD(tmp_path / "influxd")
    server.start()
    try:
        server.create_db(INFLUX_DB)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def shim(influxd: InfluxD) -> AsyncIterator[V2Shim]:
    """The ``/api/v2/write`` shim in front of :func:`influxd`."""
    proxy = V2Shim(influxd.url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
