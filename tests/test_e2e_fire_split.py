"""End to end over real sockets: one fire panel topic with the zone in the payload → per-zone
devices → per-zone fire work orders upstream (mosquitto both ways, a real gateway)."""

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
  # The panel publishes every zone's events on one topic; the zone is only in the payload.
  - id: "panel1-zone-{{zone}}"
    name: "1号消防主机 {{zone}}防区"
    driver: mqtt
    broker: local
    kind: fire_zone
    location: {{building: "2", zone: "{{zone}}"}}
    split_by: {{zone: zone}}
    points:
      - {{name: event, topic: "fire/panel1/events", path: event, type: string}}
rules:
  - id: zone-fire
    kind: fire_zone
    when: {{point: event, eq: FIRE}}
    category: fire_alarm
    priority: P0
    message: {{zh: "{{device_name}}（{{location}}）火警", en: "{{device_name}} fire"}}
"""

EVENTS = "fire/panel1/events"


@pytest.mark.mosquitto
async def test_a_single_topic_panel_with_zone_in_the_payload_yields_per_zone_fire_orders(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = load_config_text(SITE.format(mqtt=mosquitto.port, state=tmp_path))
    gateway = Gateway(config)
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

    def of(device: str) -> list[dict[str, Any]]:
        return [o for o in orders if o["location"]["device"] == device]

    async with (aiomqtt.Client("127.0.0.1", mosquitto.port) as platform,
                aiomqtt.Client("127.0.0.1", mosquitto.port) as panel):
        await platform.subscribe("pm/e2e/work-orders", qos=1)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(gateway.run(shutdown_trigger=stop.wait))
            collector = tg.create_task(collect(platform))
            await gateway.started.wait()
            async with asyncio.timeout(10):
                while gateway.drivers[0].health().counters["subscribed"] < 1:
                    await asyncio.sleep(0.02)

            await panel.publish(EVENTS, '{"zone": 3, "event": "FIRE", "ts": 1767225600}', qos=1)
            await panel.publish(EVENTS, '{"zone": 1, "event": "FIRE", "ts": 1767225601}', qos=1)
            await until(lambda: bool(of("panel1-zone-3")) and bool(of("panel1-zone-1")))

            # Zone 1 returns to normal: its order learns the alarm cleared; zone 3's is
            # untouched and its alarm still active.
            await panel.publish(EVENTS, '{"zone": 1, "event": "NORMAL", "ts": 1767225660}',
                                qos=1)
            await until(lambda: any(o["alarm_active"] is False for o in of("panel1-zone-1")))
            active = {a.device for a in gateway.engine.active()}
            last = {dev: view["last"]["event"]["value"]
                    for dev, view in gateway.readings.snapshot()["devices"].items()}
            health = gateway.drivers[0].health()
            stop.set()
            collector.cancel()

    assert active == {"panel1-zone-3"}
    assert last == {"panel1-zone-3": "FIRE", "panel1-zone-1": "NORMAL"}
    assert health.counters["readings"] == 3 and health.counters["bad_split"] == 0
    zone3, zone1 = of("panel1-zone-3"), of("panel1-zone-1")
    assert len(zone3) == 1, zone3  # never touched by zone 1's messages
    first3, first1 = zone3[0], zone1[0]
    assert first3["category"] == first1["category"] == "fire_alarm"
    assert first3["priority"] == "P0" and first3["status"] == "open"
    assert first3["location"] == {"site": "e2e", "building": "2", "floor": None, "zone": "3",
                                  "room": None, "device": "panel1-zone-3",
                                  "device_name": "1号消防主机 3防区"}
    assert first1["location"]["zone"] == "1"
    assert first1["location"]["device_name"] == "1号消防主机 1防区"
    assert first3["description"]["zh"] == "1号消防主机 3防区（2号楼 3区）火警"
    assert first3["id"] != first1["id"]
    assert (first3["alarm_id"], first1["alarm_id"]) == ("zone-fire@panel1-zone-3",
                                                        "zone-fire@panel1-zone-1")
    cleared = zone1[-1]
    assert cleared["alarm_active"] is False and cleared["status"] == "alarm_cleared"
    assert cleared["id"] == first1["id"]
