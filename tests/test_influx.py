"""Readings into a real InfluxDB (Debian's 1.6.7 behind the /api/v2/write shim, see
tests/influx_support.py): read back with their tags, an outage with every point arriving
exactly once, the buffer cap, and the answers that must not be retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt
import pytest

from gateway.app import Gateway
from gateway.bus import Bus, Overflow
from gateway.clock import Clock, FakeClock, SystemClock
from gateway.config import GatewayConfig, HealthConfig, load_config_text
from gateway.health import HealthModel
from gateway.influx import InfluxWriter
from gateway.model import Quality, Reading
from gateway.supervisor import Supervisor
from tests.influx_support import INFLUX_DB, InfluxD, V2Shim, influxd_binary
from tests.support import Mosquitto

pytestmark = pytest.mark.skipif(influxd_binary() is None,
                                reason="influxd missing: scripts/setup.sh --test installs it")

DB = INFLUX_DB
T0 = 1_767_225_600.0


def config(url: str, tmp_path: Path, extra: str = "", influx: str = "",
           bucket: str = DB) -> GatewayConfig:
    return load_config_text(f"""
site: {{id: sun, name: 阳光花园, gateway_id: gw1}}
state_dir: {tmp_path / "state"}
influxdb:
  url: {url}
  org: ignored-by-1.x
  bucket: {bucket}
  token: ${{INFLUX_TOKEN}}
  precision: us
  retry_max: 0.3
  {influx}
{extra}
""", env={"INFLUX_TOKEN": "user:password"})


async def until(check: Callable[[], Awaitable[bool] | bool], what: str,
                within: float = 15.0) -> None:
    """Wait (bounded) for a condition on real servers."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


async def count_points(server: InfluxD) -> int:
    series = await asyncio.to_thread(server.query, "SELECT count(quality) FROM reading", DB)
    return int(series[0]["values"][0][1]) if series else 0


@pytest.mark.mosquitto
async def test_readings_through_the_gateway_land_in_influxdb_with_their_tags(
        mosquitto: Mosquitto, influxd: InfluxD, shim: V2Shim, tmp_path: Path) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_interval: 100ms\n  gzip: true", extra=f"""
brokers:
  devices: {{host: 127.0.0.1, port: {mosquitto.port}}}
devices:
  - {{id: M1, name: 总表, driver: mqtt, kind: energy_meter,
     location: {{building: "A座", floor: 3}},
     points: [{{name: kwh, topic: dev/M1/kwh, type: number}},
              {{name: state, topic: dev/M1/state, type: string}},
              {{name: relay, topic: dev/M1/relay, type: bool}}]}}
""")
    gateway = Gateway(cfg)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(gateway.run(shutdown_trigger=stop.wait))
        await gateway.started.wait()
        assert gateway.influx is not None
        await asyncio.sleep(0.3)  # the MQTT driver subscribes
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("dev/M1/kwh", "1234.5", qos=1)
            await client.publish("dev/M1/state", "running ok", qos=1)
            await client.publish("dev/M1/relay", "true", qos=1)
        await until(lambda: gateway.influx is not None and gateway.influx.status().written >= 3,
                    "three points written")
        health = gateway.health()
        stop.set()
    rows = await asyncio.to_thread(influxd.rows, "SELECT * FROM reading GROUP BY *", DB)
    by_point = {r["point"]: r for r in rows}
    assert set(by_point) == {"kwh", "state", "relay"}
    for row in rows:
        assert (row["site"], row["building"], row["floor"], row["device"], row["kind"]) == (
            "sun", "A座", "3", "M1", "energy_meter")
        assert row["quality"] == "good"
    assert by_point["kwh"]["value"] == 1234.5
    assert by_point["relay"]["value"] == 1.0
    assert by_point["state"]["text"] == "running ok" and by_point["state"]["value"] is None
    assert health["influxdb"]["state"] == "up" and health["influxdb"]["written"] >= 3
    assert not [r for r in health["reasons"] if r["code"].startswith("influxdb")]
    assert all(s == 204 for s in shim.statuses)
    assert set(shim.encodings) == {"gzip"}, "gzip: true compresses every write"
    assert len(shim.accepted_lines) == 3


async def feed(bus: Bus, values: range, step: float = 0.002, clock: Clock | None = None,
               ) -> None:
    """Readings with distinct values and timestamps, a little apart (real time)."""
    for i in values:
        ts = T0 + i * 0.001 if clock is None else clock.time()
        await bus.publish(Reading("M1", "kwh", float(i), Quality.GOOD, ts))
        if step and clock is None:
            await asyncio.sleep(step)


async def values_in(server: InfluxD) -> list[float]:
    rows = await asyncio.to_thread(server.rows, "SELECT value FROM reading", DB)
    return sorted(r["value"] for r in rows)


async def test_influxdb_down_and_back_every_point_arrives_exactly_once(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_size: 20\n  batch_interval: 50ms")
    bus = Bus()
    sub = bus.subscribe("influxdb", maxsize=10_000, overflow=Overflow.DROP_OLDEST)
    clock = SystemClock()
    writer = InfluxWriter(cfg, clock, buffer_path=tmp_path / "buf.sqlite3")
    task = asyncio.create_task(writer.run(sub))
    try:
        await feed(bus, range(0, 200))
        await until(lambda: writer.status().written == 200, "first 200 written")
        # Unreachable: the engine and the endpoint are gone (connection refused).
        await shim.stop()
        await asyncio.to_thread(influxd.stop)
        await feed(bus, range(200, 500))
        await until(lambda: writer.status().buffered > 0 and writer.status().state == "down",
                    "buffering while down")
        await feed(bus, range(500, 600))  # more while it is down
        down = writer.status()
        assert down.written == 200 and down.dropped == 0
        health = HealthModel(HealthConfig(), clock, Supervisor(clock), influx=writer.status)
        report = health.report()
        assert report.status == "degraded", "history down: degraded, never failing"
        assert [r.code for r in report.reasons] == ["influxdb_down"]
        assert report.detail["influxdb"]["buffered"] == down.buffered
        # Back: same data directory, same ports.
        await asyncio.to_thread(influxd.start)
        shim = V2Shim(influxd.url, port=shim.port, accepted_lines=shim.accepted_lines,
                      statuses=shim.statuses)
        await shim.start()
        await feed(bus, range(600, 700))
        await until(lambda: writer.status().written == 700, "all 700 written", within=30)
        up = writer.status()
        assert (up.state, up.buffered, up.dropped, up.queue_dropped) == ("up", 0, 0, 0)
        assert await values_in(influxd) == [float(i) for i in range(700)], "none lost"
        assert len(shim.accepted_lines) == 700, "each line accepted once: no duplicates"
        assert len(set(shim.accepted_lines)) == 700
        assert health.report().status == "ok"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await shim.stop()


async def test_buffer_cap_exceeded_drops_the_oldest_and_counts_them(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_size: 10\n  batch_interval: 60s\n"
                                            "  buffer: {max_points: 100}")
    bus = Bus()
    sub = bus.subscribe("influxdb", maxsize=10_000, overflow=Overflow.DROP_OLDEST)
    writer = InfluxWriter(cfg, SystemClock(), buffer_path=None)
    shim.force = (503, "engine unavailable")  # 5xx: keep and retry
    task = asyncio.create_task(writer.run(sub))
    try:
        await feed(bus, range(300), step=0)
        await until(lambda: writer.status().buffered + writer.status().dropped == 300,
                    "all batched")
        assert writer.status().state == "down"
        report = writer.status()
        assert (report.buffered, report.dropped) == (100, 200)
        shim.force = None
        await until(lambda: writer.status().written == 100, "the newest 100 written")
        assert await values_in(influxd) == [float(i) for i in range(200, 300)], \
            "the oldest were dropped, the newest kept"
        assert writer.status().dropped == 200
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_bad_batches_are_dropped_and_a_bad_token_is_retried_slowly(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_size: 5\n  batch_interval: 60s")
    bus = Bus()
    sub = bus.subscribe("influxdb", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    writer = InfluxWriter(cfg, SystemClock(), buffer_path=None)
    task = asyncio.create_task(writer.run(sub))
    try:
        shim.force = (400, "unable to parse")
        await feed(bus, range(10), step=0)
        await until(lambda: writer.status().rejected == 10, "two batches refused")
        await asyncio.sleep(0.5)  # retry_max is 0.3 s: a retry would show by now
        assert shim.statuses == [400, 400], "a refused batch is never sent again"
        assert writer.status().buffered == 0
        assert "answered 400 unable to parse" in caplog.text
        assert "refused and is dropped" in caplog.text

        shim.force = (401, "unauthorized access")
        await feed(bus, range(10, 15), step=0)
        await until(lambda: writer.status().state == "refused", "refused")
        status = writer.status()
        assert status.buffered == 5 and "401" in (status.last_error or "")
        assert "check influxdb.token" in caplog.text
        shim.force = None  # the token was fixed
        await until(lambda: writer.status().written == 5, "kept batch written after the fix")
        assert await values_in(influxd) == [10.0, 11.0, 12.0, 13.0, 14.0]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_batches_seal_by_interval_on_the_clock(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path, fake_clock: FakeClock) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_size: 1000\n  batch_interval: 2s")
    bus = Bus()
    sub = bus.subscribe("influxdb", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    writer = InfluxWriter(cfg, fake_clock, buffer_path=None)
    task = asyncio.create_task(writer.run(sub))
    try:
        await feed(bus, range(3), clock=fake_clock)
        # The stage starts in real time (its buffer opens in a thread): wait until it has
        # taken the readings, so the interval runs from a known moment on the fake clock.
        await until(lambda: sub.delivered == 3, "readings taken")
        await fake_clock.advance(1.9)
        await asyncio.sleep(0.2)  # real time for a write that must not happen
        assert shim.statuses == [] and writer.status().written == 0
        await fake_clock.advance(0.2)
        await until(lambda: writer.status().written == 3, "sealed at 2 s and written")
        assert shim.statuses == [204]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stop_keeps_unsent_readings_in_the_buffer_file_for_the_next_start(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_size: 1000\n  batch_interval: 60s")
    path = tmp_path / "buf.sqlite3"
    bus = Bus()
    sub = bus.subscribe("influxdb", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    first = InfluxWriter(cfg, SystemClock(), buffer_path=path)
    task = asyncio.create_task(first.run(sub))
    await feed(bus, range(7), step=0)
    await until(lambda: sub.delivered == 7, "collected")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert shim.statuses == [], "nothing was due yet"
    assert first.status().buffered == 7, "saved on the way out"

    second = InfluxWriter(cfg, SystemClock(), buffer_path=path)
    task = asyncio.create_task(second.run(bus.subscribe("again", maxsize=10)))
    try:
        await until(lambda: second.status().written == 7, "sent after the restart")
        assert await values_in(influxd) == [float(i) for i in range(7)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unreadable_buffer_file_is_moved_aside_and_writing_goes_on(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_interval: 50ms")
    path = tmp_path / "buf.sqlite3"
    await asyncio.to_thread(path.write_bytes, b"this is not an SQLite file " * 100)
    bus = Bus()
    writer = InfluxWriter(cfg, SystemClock(), buffer_path=path)
    task = asyncio.create_task(writer.run(bus.subscribe("influxdb", maxsize=100)))
    try:
        await feed(bus, range(3), step=0)
        await until(lambda: writer.status().written == 3, "written with a fresh buffer")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    moved = await asyncio.to_thread(lambda: list(tmp_path.glob("buf.sqlite3.unreadable-*")))
    assert len(moved) == 1
    assert "is unreadable" in caplog.text


async def test_a_missing_database_is_refused_by_the_real_server_and_kept(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path) -> None:
    cfg = config(shim.url, tmp_path, influx="batch_interval: 50ms", bucket="nosuchdb")
    bus = Bus()
    writer = InfluxWriter(cfg, SystemClock(), buffer_path=None)
    task = asyncio.create_task(writer.run(bus.subscribe("influxdb", maxsize=100)))
    try:
        await feed(bus, range(4), step=0)
        await until(lambda: writer.status().state == "refused", "refused")
        status = writer.status()
        assert status.buffered == 4 and status.rejected == 0, "kept for when the bucket exists"
        assert 'answered 404 database not found: "nosuchdb"' in (status.last_error or "")
        await asyncio.to_thread(influxd.create_db, "nosuchdb")
        await until(lambda: writer.status().written == 4, "written once the database exists")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
