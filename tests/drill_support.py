"""Fault drills: the gateway as a real process between real brokers, broken for real.

A drill runs ``python -m gateway.cli run`` against a device-side mosquitto and an upstream
platform (a persistent-session MQTT subscriber on its own mosquitto, or an aiohttp REST API), all
on 127.0.0.1, breaks something (a broker stopped or SIGKILLed, the gateway SIGKILLed, the disk
filled, a state file damaged) and then checks, by work-order ``(id, seq)``:

* **lost**: an ``(id, seq)`` the gateway produced that the platform never received — a gap in
  an order's sequence, an update the outbox file knows of but the platform does not, or an
  alarm that never got an order;
* **duplicated**: ``(id, seq)`` received more than once (the documented at-least-once re-send
  of a message in flight when a link broke; each drill bounds it);
* **second orders**: an alarm that got more than one order id;
* **tracebacks** in the gateway's log;
* **health honest**: what ``GET /api/v1/upstream/health`` said during the fault and after.

Each drill adds a :class:`DrillRow`; the table is printed at the end of the test run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
from aiohttp import web

from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
SITE = "drill"
STATUS_TOKEN = "drill-status-token-0123456789"
HTTP_TOKEN = "drill-upstream-token"


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class DrillRow:
    """One line of the drill table; None where a drill does not measure the column."""

    drill: str
    tried: int
    lost: int | None
    duplicated: int | None
    second_orders: int | None
    tracebacks: int | None
    health_honest: bool | None
    #: Messages the platform never received although its broker had confirmed them (PUBACK):
    #: lost by the broker, not the gateway. Only counted where the gateway logs at DEBUG.
    broker_lost: int | None = None

    def markdown(self) -> str:
        cells = [self.tried, self.lost, self.broker_lost, self.duplicated, self.second_orders,
                 self.tracebacks,
                 None if self.health_honest is None else "y" if self.health_honest else "n"]
        return f"| {self.drill} | " + " | ".join(
            "n/a" if c is None else str(c) for c in cells) + " |"


#: Filled by the drills of this test run; printed by tests/conftest.py.
REPORT: list[DrillRow] = []

TABLE_HEADER = ("| drill | tried | lost | lost by the broker after its PUBACK | "
                "duplicated (id, seq) | second orders | tracebacks | health honest |\n"
                "| --- | --- | --- | --- | --- | --- | --- | --- |")


# --------------------------------------------------------------------------- the site


def site_config(tmp_path: Path, *, devices_port: int, elevators: int, upstream: str,
                status_port: int, state_dir: Path | None = None, extra: str = "") -> Path:
    """A site of ``elevators`` MQTT elevators, each with a ``trapped`` point (retained state
    topic ``dev/E<n>/trapped``) and an at-once P0 entrapment rule."""
    devices = "\n".join(
        f"  - {{id: E{n}, name: {n}号梯, driver: mqtt, kind: elevator, "
        f"location: {{building: \"1\"}}, points: [{{name: trapped, topic: dev/E{n}/trapped, "
        f"type: int}}]}}" for n in range(1, elevators + 1))
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site: {{id: {SITE}, name: 演练小区, gateway_id: gw1}}
state_dir: {state_dir or tmp_path / "state"}
brokers:
  devices: {{host: 127.0.0.1, port: {devices_port}, reconnect: {{initial: 0.1, max: 0.5}}}}
{upstream}
  status_api: {{host: 127.0.0.1, port: {status_port}, token: {STATUS_TOKEN}}}
health: {{pending_warn_after: 1s, stall_after: 60s}}
devices:
{devices}
rules:
  - {{id: trapped, kind: elevator, when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 困人, en: trapped}}}}
{extra}
""", encoding="utf-8")
    return path


def mqtt_upstream(port: int) -> str:
    return f"""\
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream:
  broker: platform
  topic_prefix: pm"""


def http_upstream(port: int) -> str:
    return f"""\
upstream:
  http:
    url: http://127.0.0.1:{port}/api/work-orders
    token: {HTTP_TOKEN}
    retry: {{initial: 50ms, max: 500ms}}
    timeouts: {{connect: 1s, read: 2s, total: 3s}}"""


async def set_trapped(devices_port: int, states: dict[int, int]) -> None:
    """Publish elevators' ``trapped`` states, retained (as a real device's state topic is)."""
    async with aiomqtt.Client("127.0.0.1", devices_port) as client:
        for n, value in states.items():
            await client.publish(f"dev/E{n}/trapped", str(value), qos=1, retain=True)


# --------------------------------------------------------------------------- the gateway


class GatewayProcess:
    """``python -m gateway.cli run`` as a child process; every log line is kept, across
    restarts, in :attr:`lines`."""

    def __init__(self, config: Path, status_port: int | None = None, *,
                 log_level: str = "INFO") -> None:
        self.config = config
        self.status_port = status_port
        self.log_level = log_level
        self.lines: list[str] = []
        self.runs = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._mark = 0

    async def start(self) -> None:
        self._mark = len(self.lines)
        self.runs += 1
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config),
            "--log-level", self.log_level, cwd=REPO, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read(self._proc), name="gateway-log")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def count(self, pattern: str, *, this_run: bool = False) -> int:
        regex = re.compile(pattern)
        lines = self.lines[self._mark:] if this_run else self.lines
        return sum(1 for line in lines if regex.search(line))

    async def wait_for(self, pattern: str, count: int = 1, deadline: float = 20.0, *,
                       this_run: bool = True) -> None:
        try:
            async with asyncio.timeout(deadline):
                while self.count(pattern, this_run=this_run) < count:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"no {count}x {pattern!r} in:\n" + self.text[-6000:]) from None

    async def health(self) -> dict[str, Any]:
        assert self.status_port is not None, "this gateway has no status API"
        url = f"http://127.0.0.1:{self.status_port}/api/v1/upstream/health"
        async with aiohttp.ClientSession() as session, session.get(
                url, headers={"Authorization": f"Bearer {STATUS_TOKEN}"},
                timeout=aiohttp.ClientTimeout(total=2)) as response:
            data: dict[str, Any] = await response.json()
            return data

    async def wait_health(self, check: Callable[[dict[str, Any]], bool],
                          deadline: float = 20.0) -> dict[str, Any]:
        """Poll the health until ``check`` holds; returns that report."""
        last: dict[str, Any] = {}
        try:
            async with asyncio.timeout(deadline):
                while True:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        last = await self.health()
                        if check(last):
                            return last
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"health never matched; last: {json.dumps(last)[:3000]}\n"
                                 + self.text[-3000:]) from None

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the running gateway (SIGHUP: reload its config)."""
        assert self._proc is not None and self._proc.returncode is None, "not running"
        self._proc.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, like a power cut."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> int:
        return await self._end(signal.SIGTERM)

    async def _end(self, sig: signal.Signals) -> int:
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.returncode is None:
            proc.send_signal(sig)
        async with asyncio.timeout(15):
            code = await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return code


@contextlib.asynccontextmanager
async def gateway(config: Path, status_port: int | None = None, *, start: bool = False,
                  log_level: str = "INFO") -> AsyncIterator[GatewayProcess]:
    """A gateway process (started at once with ``start``), SIGKILLed on the way out."""
    gw = GatewayProcess(config, status_port, log_level=log_level)
    try:
        if start:
            await gw.start()
        yield gw
    finally:
        await gw.kill()
        # Kept with pytest's temporary directory: what to read when a drill fails.
        await asyncio.to_thread((config.parent / "gateway.log").write_text, gw.text)


def reasons(health: dict[str, Any]) -> set[str]:
    return {r["code"] for r in health.get("reasons", [])}


# --------------------------------------------------------------------------- the platform


class MqttPlatform:
    """The platform on MQTT: a persistent session that reconnects whenever its broker is
    back, collecting work orders and alarm messages."""

    def __init__(self, port: int, site: str = SITE) -> None:
        self.port = port
        self.site = site
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port,
                                          identifier=f"platform-{self.site}",
                                          clean_session=False) as client:
                    await client.subscribe(f"pm/{self.site}/#", qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self.messages.append((str(message.topic), json.loads(message.payload)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    def orders(self) -> list[dict[str, Any]]:
        return [m for t, m in self.messages if t == f"pm/{self.site}/work-orders"]

    def alarms(self) -> list[dict[str, Any]]:
        return [m for t, m in self.messages if t == f"pm/{self.site}/alarms"]

    async def wait_count(self, count: int, deadline: float = 20.0) -> None:
        """Until ``count`` work-order messages have arrived."""
        async with asyncio.timeout(deadline):
            while len(self.orders()) < count:
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def mqtt_platform(port: int, site: str = SITE, *,
                        record: Path | None = None) -> AsyncIterator[MqttPlatform]:
    """The platform, subscribed; with ``record``, what it received is written there (JSON
    lines of ``[topic, message]``) on the way out, to read when a drill fails."""
    platform = MqttPlatform(port, site)
    task = asyncio.create_task(platform.run(), name="platform")
    try:
        await asyncio.wait_for(platform.subscribed.wait(), 10)
        yield platform
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if record is not None:
            lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in platform.messages)
            await asyncio.to_thread(record.write_text, lines, encoding="utf-8")


@dataclass
class Request:
    """One POST the platform's REST API answered."""

    key: str
    body: dict[str, Any]
    status: int


@dataclass
class HttpPlatform:
    """The platform's REST API on 127.0.0.1: can be down (connection refused), failing (503),
    scripted per work-order category (``script``) or fine; keeps every request it answered."""

    port: int = field(default_factory=free_port)
    failing: bool = False
    script: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/work-orders", self._work_order)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _work_order(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {HTTP_TOKEN}":
            return web.json_response({"error": "who are you"}, status=401)
        body = await request.json()
        answers = self.script.get(str(body["category"]), [])
        status = answers.pop(0) if answers else 503 if self.failing else 200
        self.requests.append(Request(request.headers["Idempotency-Key"], body, status))
        return web.json_response({"ok": status < 300}, status=status)

    def delivered(self) -> list[Request]:
        return [r for r in self.requests if r.status < 300]

    def orders(self) -> list[dict[str, Any]]:
        """Work orders the platform accepted (2xx), in order."""
        return [r.body for r in self.delivered()]

    async def wait_delivered(self, count: int, deadline: float = 15.0) -> None:
        async with asyncio.timeout(deadline):
            while len(self.delivered()) < count:
                await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- the tally


def outbox_file(state_dir: Path) -> Path:
    return state_dir / f"outbox-{SITE}-gw1.sqlite3"


def outbox_state(state_dir: Path) -> tuple[dict[str, int], int]:
    """From a stopped gateway's outbox file: the latest seq of every open order, and how many
    deliveries are still pending."""
    path = outbox_file(state_dir)
    if not path.exists():
        return {}, 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        latest = {}
        for (body,) in conn.execute("SELECT body FROM snapshot"):
            order = json.loads(body)
            latest[order["id"]] = order["seq"]
        pending = conn.execute("SELECT count(*) FROM delivery").fetchone()[0]
    return latest, int(pending)


#: The gateway's DEBUG line for a work-order update its MQTT broker confirmed.
CONFIRMED = re.compile(r"outbox: mqtt confirmed work_order (\S+)")


def tally(drill: str, *, orders: Iterable[dict[str, Any]], alarms: Iterable[str],
          state_dir: Path, log: str, health_honest: bool, tried: int = 1) -> DrillRow:
    """Count what a drill cost; the row is added to the report and returned."""
    orders = list(orders)
    received = collections.Counter((o["id"], o["seq"]) for o in orders)
    ids_by_alarm: dict[str, set[str]] = collections.defaultdict(set)
    seqs: dict[str, set[int]] = collections.defaultdict(set)
    for o in orders:
        ids_by_alarm[o["alarm_id"]].add(o["id"])
        seqs[o["id"]].add(o["seq"])
    latest, pending = outbox_state(state_dir)
    # At DEBUG the gateway logs every confirmation: an update missing at the platform that
    # its broker had confirmed was lost by the broker (the order still has to arrive).
    confirmed = set(CONFIRMED.findall(log))
    lost = pending
    broker_lost = 0
    for order_id in seqs.keys() | latest.keys():
        top = max([*seqs[order_id], latest.get(order_id, 0)])
        for s in range(1, top + 1):
            if s not in seqs[order_id]:
                if f"{order_id}:{s}" in confirmed:
                    broker_lost += 1
                else:
                    lost += 1
    lost += sum(1 for alarm in alarms if not ids_by_alarm.get(alarm))
    row = DrillRow(
        drill=drill, tried=tried, lost=lost, broker_lost=broker_lost if confirmed else None,
        duplicated=sum(n - 1 for n in received.values() if n > 1),
        second_orders=sum(len(ids) - 1 for ids in ids_by_alarm.values()),
        tracebacks=log.count("Traceback"), health_honest=health_honest)
    REPORT.append(row)
    return row


def rng(seed: int) -> random.Random:
    """The drills' randomness: seeded, so a failure can be replayed."""
    return random.Random(seed)
