"""/metrics without Prometheus: the collector's output parsed back with prometheus-client's
own parser, the sources against real objects (outbox, Modbus link and server, event loop),
and who may scrape over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from ipaddress import IPv4Network
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from drivers.modbus import ModbusLink
from gateway.alarms import AlarmBook
from gateway.alarms._lifecycle_state import AlarmRecord
from gateway.app import Gateway
from gateway.clock import FakeClock, SystemClock
from gateway.config import HttpServerLimits, Location, load_config_text
from gateway.errors import ConfigError
from gateway.histogram import Histogram
from gateway.http_server import Listen, WebServer, listen_settings
from gateway.metrics import (
    CONTENT_TYPE,
    GatewayCollector,
    LoopLagSampler,
    MetricsRoutes,
    alarm_metrics,
    outbox_metrics,
)
from gateway.outbox import Outbox
from simulators.modbus_server import SimModbusServer, SimUnit
from tests.support import free_port
from tests.test_modbus_support import Collector, point, running, tcp_device
from tests.test_outbox import TARGETS, alarm, order

REPO = Path(__file__).resolve().parents[1]
SITE = """
site: {id: s, name: s, gateway_id: g}
brokers: {platform: {host: 127.0.0.1, port: 1}}
upstream: {broker: platform}
devices:
  - {id: m1, driver: modbus-tcp, host: 127.0.0.1, port: 1, points: [{name: x, address: 0}]}
"""
TOKEN = "metrics-token-0123456789"


def families(text: bytes) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def value(fams: dict[str, Metric], name: str, **labels: str) -> float:
    """The one sample called ``name`` with exactly these labels (plus any others absent)."""
    found = [s.value for f in fams.values() for s in f.samples
             if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# -- the exposition


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    gateway = Gateway(load_config_text(
        SITE + "telemetry: {}\nmetrics: {}\naccounting: {}\n"
        "influxdb: {url: 'http://127.0.0.1:1', bucket: history}\n"))
    assert gateway.metrics is not None
    text = gateway.metrics.exposition()
    exposed = {s.name for f in families(text).values() for s in f.samples
               if s.name.startswith("propgw_")}
    exposed = {re.sub(r"_(bucket|count|sum)$", "", n) if "duration" in n or "lag_seconds" in n
               else n for n in exposed}
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(propgw_\w+)`", doc, flags=re.M))
    # Families without samples in a fresh gateway (no restarts, no failing source yet).
    exposed |= {"propgw_stage_restarts_total", "propgw_metrics_source_errors_total",
                "propgw_link_events_total", "propgw_health_reasons",
                "propgw_telemetry_reported_total",
                # MQTT lanes: this site has no MQTT device (tests/test_mqtt_overload.py).
                "propgw_mqtt_messages_taken_total", "propgw_mqtt_messages_shed_total",
                "propgw_mqtt_messages_waiting"}
    assert documented == exposed


def test_influxdb_counters_and_state_come_from_the_writers_status() -> None:
    from gateway.influx import InfluxStatus
    from gateway.metrics import influx_metrics

    status = InfluxStatus(state="down", written=1200, batches_written=3, buffered=40,
                          buffered_bytes=2048, dropped=7, rejected=2, queue_dropped=0,
                          last_error="connection refused", last_write=None, durable=True)
    collector = GatewayCollector()
    collector.add("influxdb", influx_metrics(lambda: status))
    fams = families(collector.exposition())
    assert value(fams, "propgw_influxdb_state", state="down") == 1
    assert value(fams, "propgw_influxdb_state", state="up") == 0
    assert value(fams, "propgw_influxdb_written_points_total") == 1200
    assert value(fams, "propgw_influxdb_dropped_points_total") == 7
    assert value(fams, "propgw_influxdb_buffered_points") == 40


def test_the_exposition_parses_with_help_and_type_and_build_info() -> None:
    gateway = Gateway(load_config_text(SITE + "metrics: {}\n"))
    assert gateway.metrics is not None
    fams = families(gateway.metrics.exposition())
    assert fams["propgw_readings"].type == "counter"
    assert fams["propgw_modbus_request_duration_seconds"].type == "histogram"
    assert all(f.documentation for f in fams.values())
    from gateway import __version__
    info = fams["propgw_build_info"].samples[0]
    assert info.labels["version"] == __version__ and info.value == 1
    link = "modbus[127.0.0.1:1]"
    assert value(fams, "propgw_devices", link=link, state="starting") == 1
    assert value(fams, "propgw_devices_comm_loss", link=link) == 0
    assert value(fams, "propgw_upstream_up", target="mqtt") == 0
    assert value(fams, "propgw_bus_queue_capacity", subscription="alarms") == 10_000
    assert value(fams, "propgw_health_status", status="degraded") == 1
    assert value(fams, "propgw_health_status", status="ok") == 0
    assert "process_resident_memory_bytes" in {s.name for f in fams.values()
                                               for s in f.samples}


def test_alarms_are_counted_by_state_and_priority_with_zeros() -> None:
    def rec(n: int, priority: str, *, active: bool, acked: bool) -> AlarmRecord:
        return AlarmRecord(alarm_id=f"a{n}", rule_id="r", device="d", device_name="d",
                           category="c", priority=priority, location=Location(),
                           condition=active, acked=acked)

    class Book:
        def records(self) -> list[AlarmRecord]:
            return [rec(1, "P0", active=True, acked=False), rec(2, "P0", active=True,
                                                                  acked=False),
                    rec(3, "P2", active=True, acked=True), rec(4, "P1", active=False,
                                                                 acked=False)]

    collector = GatewayCollector()
    collector.add("alarms", alarm_metrics(cast(AlarmBook, Book())))
    fams = families(collector.exposition())
    assert value(fams, "propgw_alarms", state="active_unacknowledged", priority="P0") == 2
    assert value(fams, "propgw_alarms", state="active_acknowledged", priority="P2") == 1
    assert value(fams, "propgw_alarms", state="returned_unacknowledged", priority="P1") == 1
    assert value(fams, "propgw_alarms", state="active_unacknowledged", priority="P3") == 0
    assert len(fams["propgw_alarms"].samples) == 8 * 4, "every state x priority, zeros included"


async def test_outbox_depth_oldest_age_and_shedding_per_target(fake_clock: FakeClock) -> None:
    async with Outbox(None, targets=TARGETS, clock=fake_clock, max_messages=2) as outbox:
        collector = GatewayCollector()
        collector.add("outbox", outbox_metrics(outbox, TARGETS, fake_clock))
        assert value(families(collector.exposition()), "propgw_outbox_oldest_pending_age_seconds",
                     target="mqtt") == 0
        await outbox.put(alarm(1, "P2"))
        await fake_clock.advance(30)
        await outbox.put(order(1))
        await outbox.put(order(2))  # over the bound: the P2 alarm is shed
        await fake_clock.advance(15)
        fams = families(collector.exposition())
    assert value(fams, "propgw_outbox_pending_messages", target="mqtt") == 2
    assert value(fams, "propgw_outbox_oldest_pending_age_seconds", target="mqtt") == 15
    assert value(fams, "propgw_outbox_shed_total", kind="alarm") == 1
    assert value(fams, "propgw_outbox_shed_total", kind="telemetry") == 0
    assert value(fams, "propgw_outbox_over_bound") == 0


def test_a_failing_source_is_left_out_logged_once_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    collector = GatewayCollector()
    calls = 0

    def broken() -> Iterable[Metric]:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    collector.add("broken", broken)
    collector.add("lag", LoopLagSampler().metrics)
    with caplog.at_level(logging.ERROR, logger="gateway.metrics._collector"):
        collector.exposition()
        fams = families(collector.exposition())
    assert calls == 2
    assert value(fams, "propgw_metrics_source_errors_total", source="broken") == 2
    assert "propgw_event_loop_lag_last_seconds" in fams, "the other sources still answer"
    assert sum("source broken failed" in r.getMessage() for r in caplog.records) == 1


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    hist = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0, -1.0):
        hist.observe(seconds)
    assert hist.cumulative() == [(0.1, 3), (1.0, 4), (float("inf"), 5)]
    assert hist.count == 5 and hist.sum == pytest.approx(3.65)
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))


# -- the hooks, against real things


async def test_modbus_latency_is_observed_per_answer_and_timeouts_are_not() -> None:
    port = free_port()
    unit = SimUnit(1)
    unit.set_registers("holding", 0, [5])
    link = ModbusLink([tcp_device("d", port, [point("v", 0)], poll_interval=0.05,
                                  timeout=0.3, retries=0, max_backoff=1)], SystemClock())
    sink = Collector()
    async with SimModbusServer([unit], port=port), running(link, sink):
        unit.faults.delay = 0.12
        async with asyncio.timeout(10):
            while link.request_latency.count < 3:
                await asyncio.sleep(0.05)
        buckets = dict(link.request_latency.cumulative())
        assert buckets[0.1] == 0, "every answer took over 100 ms"
        assert buckets[0.25] == link.request_latency.count
        unit.faults.clear()
        unit.faults.silent = True
        counters = link.health().counters
        async with asyncio.timeout(10):
            while counters.get("timeouts", 0) < 2:
                await asyncio.sleep(0.05)
        observed = link.request_latency.count
        timeouts = counters["timeouts"]
        async with asyncio.timeout(10):
            while counters["timeouts"] == timeouts:
                await asyncio.sleep(0.05)
        assert link.request_latency.count == observed, "a timeout is no latency sample"


async def test_the_loop_lag_sampler_sees_a_blocked_loop() -> None:
    sampler = LoopLagSampler(interval=0.02)
    task = asyncio.create_task(sampler.run(), name="loop-lag")
    try:
        async with asyncio.timeout(5):
            while sampler.histogram.count < 3:
                await asyncio.sleep(0.01)
        assert sampler.max < 0.2, "nothing blocked the loop yet"
        time.sleep(0.3)  # noqa: ASYNC251 -- the point: block the event loop for real
        async with asyncio.timeout(5):
            while sampler.max < 0.25:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    buckets = dict(sampler.histogram.cumulative())
    assert buckets[0.25] < buckets[float("inf")], "the blocked wake-up is in a high bucket"


# -- the route


@pytest.fixture
async def served() -> AsyncIterator[dict[str, WebServer]]:
    """Three servers on loopback: open to loopback, open to 10/8 only, loopback + token."""
    collector = GatewayCollector()
    collector.add("lag", LoopLagSampler().metrics)
    loopback = [IPv4Network("127.0.0.0/8")]
    routes = {"open": MetricsRoutes(collector, allow=loopback),
              "elsewhere": MetricsRoutes(collector, allow=[IPv4Network("10.0.0.0/8")]),
              "token": MetricsRoutes(collector, allow=loopback, token=TOKEN)}
    servers = {name: WebServer(Listen(name, "127.0.0.1", free_port(), HttpServerLimits()),
                               owners=[owner]) for name, owner in routes.items()}
    tasks = [asyncio.create_task(s.run(), name=f"web-{n}") for n, s in servers.items()]
    try:
        for server in servers.values():
            await asyncio.wait_for(server.serving.wait(), 5)
        yield servers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_who_may_scrape(served: dict[str, WebServer]) -> None:
    def url(name: str) -> str:
        return f"http://127.0.0.1:{served[name].port}/metrics"

    async with aiohttp.ClientSession() as http:
        async with http.get(url("open")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            assert "propgw_event_loop_lag_seconds_bucket" in await response.text()
        async with http.get(url("elsewhere")) as response:
            assert response.status == 403
            assert "metrics.allow" in (await response.json())["error"]
        async with http.get(url("token")) as response:
            assert response.status == 401
        async with http.get(url("token"), headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with http.get(url("token"),
                            headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
        async with http.get(url("open").replace("/metrics", "/metricsx")) as response:
            assert response.status == 404


def test_ipv4_mapped_and_scoped_addresses() -> None:
    routes = MetricsRoutes(GatewayCollector(), allow=[IPv4Network("127.0.0.0/8")])
    assert routes.allowed("::ffff:127.0.0.1")
    assert not routes.allowed("::1") and not routes.allowed(None)
    assert not routes.allowed("not-an-address")


# -- the config


def test_metrics_is_off_unless_given_and_listens_alone_on_loopback() -> None:
    assert Gateway(load_config_text(SITE)).metrics is None
    config = load_config_text(SITE + "metrics: {port: 9999}\n")
    assert config.metrics is not None
    assert [str(n) for n in config.metrics.allow] == ["127.0.0.0/8", "::1/128"]
    listen = listen_settings(config)
    assert listen is not None and (listen.name, listen.host, listen.port) == \
        ("metrics", "127.0.0.1", 9999)
    off = load_config_text(SITE + "metrics: {enabled: false}\n")
    assert listen_settings(off) is None and Gateway(off).metrics is None


def test_metrics_rides_on_the_console_server_and_says_where_to_set_the_port() -> None:
    console = "console: {port: 8123}\n"
    config = load_config_text(SITE + console + "metrics: {token: " + TOKEN + "}\n")
    listen = listen_settings(config)
    assert listen is not None and (listen.name, listen.port) == ("console", 8123)
    with pytest.raises(ConfigError) as err:
        load_config_text(SITE + console + "metrics: {port: 9999}\n")
    assert "metrics (line 8): port cannot be set here while console: runs the gateway's HTTP " \
        "server: /metrics is served there (set them under console:)" in str(err.value)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_config_text(SITE + "metrics: {token: short}\n")


async def test_metrics_is_served_next_to_the_console_and_the_console_is_untouched(
        tmp_path: Path) -> None:
    config = load_config_text(SITE + f"state_dir: {tmp_path}\nconsole: {{port: 0}}\n"
                                     "metrics: {}\n")
    gateway = Gateway(config)
    assert gateway.web is not None and gateway.web.listen.name == "console"
    task = asyncio.create_task(gateway.web.run(), name="web")
    try:
        await asyncio.wait_for(gateway.web.serving.wait(), 5)
        base = f"http://127.0.0.1:{gateway.web.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                assert "propgw_alarms{" in await response.text()
            async with http.get(f"{base}/api/v1/alarms") as response:
                assert response.status == 401, "the console's routes still need a login"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_check_config_says_where_metrics_answer_and_to_whom() -> None:
    import io

    from gateway.check_cli import print_summary

    out = io.StringIO()
    print_summary(load_config_text(SITE + "metrics: {allow: [10.0.0.5/32], token: " + TOKEN
                                   + "}\n"), out)
    assert "metrics: http://127.0.0.1:9480/metrics for 10.0.0.5/32, bearer token\n" \
        in out.getvalue()


def test_telemetry_counters_by_reason() -> None:
    from gateway.metrics import telemetry_metrics
    from gateway.telemetry import TelemetryStats

    stats = TelemetryStats(readings=10, not_selected=1, dropped=0, reported=6,
                           reported_by_reason={"first": 2, "change": 4}, suppressed=3,
                           points=2, messages=3)
    collector = GatewayCollector()
    collector.add("telemetry", telemetry_metrics(lambda: stats))
    fams = families(collector.exposition())
    assert value(fams, "propgw_telemetry_readings_total") == 10
    assert value(fams, "propgw_telemetry_reported_total", reason="change") == 4
    assert value(fams, "propgw_telemetry_suppressed_readings_total") == 3
    assert value(fams, "propgw_telemetry_points") == 2
