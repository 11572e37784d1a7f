"""Telemetry end to end: MQTT devices on a real mosquitto, the real gateway pipeline (driver,
point stage, bus, telemetry stage, outbox, upstream publisher), and a platform subscribed on
the broker, which checks every message against the published JSON Schema.

Messages travel in real time; every interval (flush, min_interval, stale_after) is fake time
moved by the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import jsonschema_rs
import pytest

from gateway.app import Gateway
from gateway.bus import Overflow
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.upstream import TelemetryMessage
from gateway.upstream.schema import upstream_schema
from tests.gateway_support import drivers_subscribed, running_gateway, until
from tests.support import Mosquitto, free_port

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 1}}}}
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 1}}}}
upstream: {{broker: platform, topic_prefix: pm}}
telemetry:
  defaults: {{min_interval: 10s, max_interval: 15m}}
devices:
  - id: M1
    name: 1号楼总表
    driver: mqtt
    broker: devices
    kind: energy_meter
    location: {{building: "1", floor: B1}}
    stale_after: 60s
    points:
      - {{name: power, topic: meter/M1/power, type: number, unit: kW}}
      - {{name: energy, topic: meter/M1/energy, type: number, unit: kWh}}
  - id: "door-{{door}}"
    name: "门禁{{door}}"
    driver: mqtt
    broker: devices
    kind: access_door
    location: {{zone: "{{door}}"}}
    points: [{{name: state, topic: "acs/{{door}}/state", type: string}}]
"""


class Platform:
    """The platform's side: every telemetry message, validated against the schema."""

    def __init__(self) -> None:
        self.validator = jsonschema_rs.validator_for(upstream_schema())
        self.messages: list[TelemetryMessage] = []

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            data: Any = json.loads(message.payload)
            self.validator.validate(data)  # raises with the path of what is wrong
            parsed = TelemetryMessage.model_validate(data)
            assert str(message.topic) == f"pm/s1/telemetry/{parsed.device}"
            assert message.qos == 1
            self.messages.append(parsed)

    def take(self) -> list[TelemetryMessage]:
        out, self.messages = self.messages, []
        return out


@asynccontextmanager
async def running(port: int, clock: FakeClock) -> AsyncIterator[Gateway]:
    gateway = Gateway(load_config_text(SITE.format(port=port)), clock=clock)

    def ready() -> bool:
        return (gateway.upstream is not None and gateway.upstream.connected
                and drivers_subscribed(gateway))

    async with running_gateway(gateway, ready):
        yield gateway


def by_device(messages: list[TelemetryMessage]) -> dict[str, dict[str, tuple[Any, str, str]]]:
    out: dict[str, dict[str, tuple[Any, str, str]]] = {}
    for m in messages:
        for p in m.points:
            out.setdefault(m.device, {})[p.point] = (p.value, p.quality, p.reason)
    return out


@pytest.mark.mosquitto
async def test_readings_reach_the_platform_by_exception_and_validate(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    platform = Platform()
    async with (running(mosquitto.port, fake_clock) as gateway,
                aiomqtt.Client("127.0.0.1", mosquitto.port) as client):
        assert gateway.telemetry is not None
        [feed] = [s for s in gateway.bus.subscriptions if s.name == "telemetry"]
        assert feed.overflow is Overflow.DROP_OLDEST, "telemetry must never slow alarms"
        await client.subscribe("pm/s1/telemetry/#", qos=1)
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(platform.listen(client))
            stats = gateway.telemetry.stats

            await client.publish("meter/M1/power", b"12.5", qos=1)
            await client.publish("meter/M1/energy", b"1000", qos=1)
            await client.publish("acs/D1/state", b"closed", qos=1)
            await client.publish("acs/D2/state", b"open", qos=1)
            await until(lambda: stats().reported == 4, fake_clock)
            await fake_clock.advance(1)
            await until(lambda: len(platform.messages) == 3, fake_clock)
            first = platform.take()
            assert by_device(first) == {
                "M1": {"power": (12.5, "good", "first"), "energy": (1000, "good", "first")},
                "door-D1": {"state": ("closed", "good", "first")},
                "door-D2": {"state": ("open", "good", "first")}}
            d1 = next(m for m in first if m.device == "door-D1")
            assert (d1.location.zone, d1.location.device_name, d1.kind) == \
                ("D1", "门禁D1", "access_door")

            # Within the default band (0.5 %): suppressed. Beyond it, after min_interval.
            await client.publish("meter/M1/power", b"12.55", qos=1)
            await until(lambda: stats().suppressed == 1, fake_clock)
            await fake_clock.advance(10)
            await client.publish("meter/M1/power", b"30", qos=1)
            await until(lambda: stats().reported == 5, fake_clock)
            await fake_clock.advance(1)
            await until(lambda: len(platform.messages) == 1, fake_clock)
            assert by_device(platform.take()) == {"M1": {"power": (30, "good", "change")}}

            # The meter goes silent: comm-loss is news, for both of its points.
            await fake_clock.advance(61)
            await until(lambda: len(platform.messages) == 1, fake_clock)
            assert by_device(platform.take()) == {"M1": {
                "power": (None, "comm-loss", "quality"),
                "energy": (None, "comm-loss", "quality")}}
            assert stats().messages == 5
            listener.cancel()
        health = gateway.health()
        assert health["telemetry"]["reported"] == 7
        assert health["telemetry"]["shed"] == 0


async def test_telemetry_is_posted_to_the_telemetry_url(fake_clock: FakeClock) -> None:
    """HTTP: the stage's messages go to upstream.http.telemetry_url, keyed by their id."""
    from aiohttp import web

    from gateway.bus import Bus
    from gateway.model import Quality, Reading
    from gateway.outbox import Outbox
    from gateway.telemetry import TelemetryStage
    from gateway.upstream import HttpPublisher

    got: list[tuple[str, str, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append((request.path, request.headers["Idempotency-Key"], await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/{what}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        config = load_config_text(f"""
site: {{id: s1, name: x, gateway_id: gw1}}
upstream:
  http: {{url: "http://127.0.0.1:{port}/api/work-orders",
          telemetry_url: "http://127.0.0.1:{port}/api/telemetry"}}
telemetry: {{}}
devices:
  - {{id: M1, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1,
     points: [{{name: power, address: 0, type: float32, unit: kW}}]}}
""")
        assert config.upstream is not None
        assert config.upstream.http is not None
        bus = Bus()
        feed = bus.subscribe("telemetry", overflow=Overflow.DROP_OLDEST)
        async with Outbox(None, targets={"http": {"work-orders", "telemetry"}},
                          clock=fake_clock) as outbox:
            stage = TelemetryStage(config, fake_clock, outbox, feed)
            http = HttpPublisher(config.upstream.http, fake_clock, outbox)
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(stage.run()), tg.create_task(http.run())]
                await bus.publish(Reading("M1", "power", 4.5, Quality.GOOD, fake_clock.time()))
                await fake_clock.advance(1)
                await until(lambda: len(got) == 1, fake_clock)
                for task in tasks:
                    task.cancel()
        [(path, key, body)] = got
        assert path == "/api/telemetry"
        jsonschema_rs.validator_for(upstream_schema()).validate(body)
        assert key == body["id"]
        assert body["points"][0]["value"] == 4.5
    finally:
        await runner.cleanup()
