"""Latched alarms upstream: one fire panel publishing every zone's events on one topic, a
latching rule per zone on its last event. The real gateway (MQTT driver, alarm engine, desk,
outbox, console), a real mosquitto carrying the panel's events and the platform's work orders,
the fake clock. What the platform sees at each step is asserted: a latched order stays
``alarm_active: true`` (``alarm_latched: true`` once nothing on it is active) and is cleared
only by an operator's reset, never by the next zone's fire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import jsonschema_rs
import pytest

from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.upstream.schema import upstream_schema
from tests.console_support import Client, add_users, logged_in
from tests.gateway_support import gateway_on_platform, until
from tests.support import Mosquitto

pytestmark = pytest.mark.mosquitto

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
console: {{port: 0}}
devices:
  # The bundled panel profile: every event on fire/<panel>/event, the zone in the payload.
  - {{id: "{{panel}}", name: 消防主机, driver: mqtt, broker: devices, profile: fire-panel-mqtt,
     location: {{building: "1号楼"}}}}
rules:
  - id: zone-1-fire
    kind: fire_panel
    when: {{all: [{{point: event, eq: fire}}, {{point: event_zone, eq: 1}}]}}
    latching: true
    category: fire_alarm
    priority: P0
    message: {{zh: 一区火警, en: fire in zone 1}}
  - id: zone-2-fire
    kind: fire_panel
    when: {{all: [{{point: event, eq: fire}}, {{point: event_zone, eq: 2}}]}}
    latching: true
    category: fire_alarm
    priority: P0
    message: {{zh: 二区火警, en: fire in zone 2}}
"""
ZONE1, ZONE2 = "zone-1-fire@FP1", "zone-2-fire@FP1"


@dataclass
class Site:
    gateway: Gateway
    base: str
    clock: FakeClock
    port: int
    upstream: list[tuple[str, dict[str, Any]]]
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    async def operator(self) -> Client:
        return await logged_in(self.base, self.sessions, "wang")

    def orders(self) -> list[dict[str, Any]]:
        return [p for t, p in self.upstream if t == "pm/s1/work-orders"]

    def alarms(self, alarm_id: str) -> list[tuple[str, str | None, str | None]]:
        return [(p["state"], p["transition"], p["lifecycle"]) for t, p in self.upstream
                if t == "pm/s1/alarms" and p["alarm_id"] == alarm_id]

    async def panel(self, event: str, zone: int) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as panel:
            # As the panel (and propgw's simulator) sends it: its own time, operation flags.
            body = {"event": event, "zone": zone, "operation": 1 if event == "reset" else 0,
                    "ts": self.clock.time()}
            await panel.publish("fire/FP1/event", json.dumps(body), qos=1)

    async def until(self, check: Callable[[], bool]) -> None:
        """Until a message has travelled through the gateway (real time, bounded)."""
        await until(check, self.clock)

    async def quiet(self) -> None:
        """Let anything else the gateway would send arrive (so that 'nothing more' can fail)."""
        for _ in range(30):
            await asyncio.sleep(0.01)
            await self.clock.advance(0)


@asynccontextmanager
async def running_site(tmp_path: Path, port: int, clock: FakeClock) -> AsyncIterator[Site]:
    config = load_config_text(SITE.format(state=tmp_path / "state", port=port))
    add_users(config)
    upstream: list[tuple[str, dict[str, Any]]] = []
    async with gateway_on_platform(
            config, port, clock, topics=["pm/s1/work-orders", "pm/s1/alarms"], subscribed=True,
            received=lambda topic, m: upstream.append((topic, json.loads(m)))) as gateway:
        assert gateway.web is not None
        site = Site(gateway, f"http://127.0.0.1:{gateway.web.port}", clock, port, upstream)
        try:
            yield site
        finally:
            for http in site.sessions:
                await http.close()


def steps(orders: list[dict[str, Any]]) -> list[tuple[int, str, str, bool, bool, str | None]]:
    return [(o["seq"], o["event"], o["status"], o["alarm_active"], o["alarm_latched"],
             o["alarm_reset_by"]) for o in orders]


async def test_a_second_zones_fire_leaves_the_first_zones_latched_order_uncleared_until_reset(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    validator = jsonschema_rs.validator_for(upstream_schema())
    async with running_site(tmp_path, mosquitto.port, fake_clock) as site:
        wang = await site.operator()

        await site.panel("fire", 1)
        await site.until(lambda: len(site.orders()) == 1)
        order = site.orders()[0]
        assert (order["alarm_id"], order["category"], order["location"]["device"]) == (
            ZONE1, "fire_alarm", "FP1")
        assert steps(site.orders()) == [(1, "raised", "open", True, False, None)]

        # Zone 2 reports fire: the panel's last event is now zone 2's, so zone 1's condition
        # ends. Its rule latches: the order must not read as cleared. Zone 2's alarm is the
        # same panel and category, so it joins the order (one incident on the panel).
        await fake_clock.advance(5)
        await site.panel("fire", 2)
        await site.until(lambda: len(site.orders()) == 3)
        await site.quiet()
        assert steps(site.orders()) == [
            (1, "raised", "open", True, False, None),
            (2, "alarm_latched", "open", True, True, None),
            (3, "alarm_joined", "open", True, False, None)], \
            "zone 1 latched (alarm still active), then zone 2 joined: never alarm_cleared"
        assert site.orders()[-1]["joined_alarms"] == [ZONE2]
        assert site.alarms(ZONE1)[-1] == ("cleared", "returned_to_normal", "latched"), \
            "the alarm channel says the condition ended and the alarm is latched"

        # The panel is reset on site: zone 2's condition ends too. Everything on the order now
        # waits for an operator's reset.
        await fake_clock.advance(5)  # (well inside the first step of the P0 ladder)
        await site.panel("reset", 0)
        await site.until(lambda: len(site.orders()) == 4)
        assert steps(site.orders())[3:] == [(4, "alarm_latched", "open", True, True, None)]

        status, seen = await wang.get(f"/api/v1/work-orders/{order['id']}")
        assert status == 200 and (seen["alarm_active"], seen["alarm_latched"]) == (True, True)

        # Resetting zone 1 alone is not enough: zone 2's latched alarm still holds the order.
        for alarm in (ZONE1, ZONE2):
            status, body = await wang.post(f"/api/v1/alarms/{alarm}/acknowledge", {})
            assert status == 200, body
        status, body = await wang.post(f"/api/v1/alarms/{ZONE1}/reset",
                                       {"reason": "一区复位"})
        assert status == 200, body
        await site.quiet()
        assert len(site.orders()) == 4, "nothing is cleared while zone 2 is still latched"
        assert site.alarms(ZONE1)[-1] == ("cleared", "reset", "normal")

        status, body = await wang.post(f"/api/v1/alarms/{ZONE2}/reset",
                                       {"reason": "现场确认，主机已复位"})
        assert status == 200, body
        await site.until(lambda: len(site.orders()) == 5)
        assert steps(site.orders())[4:] == [
            (5, "alarm_cleared", "alarm_cleared", False, False, "wang")]
        assert site.orders()[-1]["alarm_reset_note"] == "现场确认，主机已复位"
        for sent in site.orders():
            validator.validate(sent)
