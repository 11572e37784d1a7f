"""End to end over real sockets: one fire panel topic, literal zone devices that each select
their zone (own name and location) → per-zone fire work orders upstream; an unconfigured zone
raises nothing (mosquitto both ways, a real gateway)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.app import Gateway
from gateway.config import load_config_text
from tests.support import Mosquitto

SITE = """
site: {{id: e2e, name: 测试小区, gateway_id: gw1}}
brokers:
  local: {{host: 127.0.0.1, port: {mqtt}, reconnect: {{initial: 0.1, max: 1}}}}
  platform: {{host: 127.0.0.1, port: {mqtt}, reconnect: {{initial: 0.1, max: 1}}}}
upstream: {{broker: platform, topic_prefix: pm}}
state_dir: {state}
devices:
  - id: FACP-1-Z3
    name: B2 5F east stairs
    driver: mqtt
    broker: local
    kind: fire_zone
    location: {{building: B2, floor: "5", room: east stairs}}
    select: {{zone: 3}}
    points:
      - {{name: event, topic: "fire/FACP-1/events", path: event, type: string}}
  - id: FACP-1-Z4
    name: basement pump room
    driver: mqtt
    broker: local
    kind: fire_zone
    location: {{building: B2, floor: B1, room: pump room}}
    select: {{zone: 4}}
    points:
      - {{name: event, topic: "fire/FACP-1/events", path: event, type: string}}
rules:
  - id: zone-fire
    kind: fire_zone
    when: {{point: event, eq: FIRE}}
    category: fire_alarm
    priority: P0
    message: {{zh: "{{device_name}} 火警", en: "{{device_name}} fire"}}
"""

EVENTS = "fire/FACP-1/events"


@pytest.mark.mosquitto
async def test_zones_selected_from_one_topic_raise_orders_with_their_own_name_and_place(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    gateway = Gateway(load_config_text(SITE.format(mqtt=mosquitto.port, state=tmp_path)))
    orders: list[dict[str, Any]] = []
    changed = asyncio.Event()

    async def collect(platform: aiomqtt.Client) -> None:
        async for message in platform.messages:
            if str(message.topic) == "pm/e2e/work-orders":
                assert isinstance(message.payload, bytes)
                orders.append(json.loads(message.payload))
                changed.set()

    async def until(check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not check():
                changed.clear()
                await changed.wait()

    async with (aiomqtt.Client("127.0.0.1", mosquitto.port) as platform,
                aiomqtt.Client("127.0.0.1", mosquitto.port) as panel):
        await platform.subscribe("pm/e2e/work-orders", qos=1)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(gateway.run(shutdown_trigger=stop.wait))
            collector = tg.create_task(collect(platform))
            await gateway.started.wait()
            driver = gateway.drivers[0]
            async with asyncio.timeout(10):
                while driver.health().counters["subscribed"] < 1:
                    await asyncio.sleep(0.02)
            # Zone 7 first: if it fed any zone, that zone's order would come first.
            for zone in (7, 4, 3):
                await panel.publish(EVENTS, json.dumps({"zone": zone, "event": "FIRE"}), qos=1)
            await until(lambda: len(orders) >= 2)
            async with asyncio.timeout(10):
                while driver.health().counters["messages"] < 3:
                    await asyncio.sleep(0.02)
            active = {a.device for a in gateway.engine.active()}
            health = driver.health()
            stop.set()
            collector.cancel()

    assert active == {"FACP-1-Z3", "FACP-1-Z4"}
    assert health.counters["unselected"] == 1 and health.counters["readings"] == 2
    by_device = {o["location"]["device"]: o for o in orders}
    assert sorted(by_device) == ["FACP-1-Z3", "FACP-1-Z4"] and len(orders) == 2
    assert by_device["FACP-1-Z3"]["location"] == {
        "site": "e2e", "building": "B2", "floor": "5", "zone": None, "room": "east stairs",
        "device": "FACP-1-Z3", "device_name": "B2 5F east stairs"}
    assert by_device["FACP-1-Z4"]["location"]["device_name"] == "basement pump room"
    assert by_device["FACP-1-Z4"]["location"]["room"] == "pump room"
    assert by_device["FACP-1-Z3"]["description"]["en"] == "B2 5F east stairs fire"
