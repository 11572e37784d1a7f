"""Durability before delivery, end to end: a real gateway process, SIGKILLed during an upstream
outage, delivers every work order exactly once, in order of priority and time, once the
upstream broker is back.

Alarms come from MQTT device messages on a second mosquitto (not retained, so a restarted
gateway does not raise them again); the platform is a persistent-session subscriber on the
upstream mosquitto, which keeps its session across the broker's restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from tests.drill_support import GatewayProcess, MqttPlatform, gateway
from tests.support import Mosquitto

DEVICES = """
devices:
  - {{id: E1, name: 1号梯, driver: mqtt, kind: elevator, location: {{building: "1"}},
     points: [{{name: trapped, topic: dev/E1/trapped, type: int}}]}}
  - {{id: panel, name: 消防主机, driver: mqtt, kind: fire_panel,
     points: [{{name: fire, topic: dev/panel/fire, type: int}}]}}
  - {{id: leak1, name: 水泵房, driver: mqtt, kind: water_sensor,
     points: [{{name: wet, topic: dev/leak1/wet, type: int}}]}}
  - {{id: door1, name: 东门, driver: mqtt, kind: access_door,
     points: [{{name: forced, topic: dev/door1/forced, type: int}}]}}
rules:
  - {{id: trapped, devices: [E1], when: {{point: trapped, eq: 1}}, category: elevator_entrapment,
     priority: P0, message: {{zh: 困人, en: trapped}}}}
  - {{id: fire, devices: [panel], when: {{point: fire, eq: 1}}, category: fire_alarm,
     priority: P0, message: {{zh: 火警, en: fire}}}}
  - {{id: leak, devices: [leak1], when: {{point: wet, eq: 1}}, category: water_leak,
     priority: P1, message: {{zh: 漏水, en: leak}}}}
  - {{id: forced, devices: [door1], when: {{point: forced, eq: 1}}, category: door_forced,
     priority: P1, message: {{zh: 强行开门, en: door forced}}}}
"""


def site_config(tmp_path: Path, devices_port: int, upstream: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site: {{id: kill, name: 测试, gateway_id: gw1}}
state_dir: {tmp_path / "state"}
brokers:
  devices: {{host: 127.0.0.1, port: {devices_port}, reconnect: {{initial: 0.1, max: 0.5}}}}
{upstream}
""" + DEVICES.format(), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def gateway_process(config: Path) -> AsyncIterator[GatewayProcess]:
    """A started gateway process, SIGKILLed on the way out."""
    async with gateway(config, start=True) as gw:
        yield gw


async def publish(port: int, topic: str, payload: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=1)


@pytest.mark.mosquitto
@pytest.mark.slow
async def test_work_orders_survive_an_outage_and_a_sigkill_exactly_once_in_order(
        tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "dev").mkdir()
    devices = Mosquitto(tmp_path / "dev")
    upstream = Mosquitto(tmp_path / "up", extra_conf=(
        f"persistence true\npersistence_location {tmp_path / 'up'}/\n"))
    config = site_config(tmp_path, devices.port, f"""\
  platform: {{host: 127.0.0.1, port: {upstream.port}, reconnect: {{initial: 0.2, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}""")
    platform = MqttPlatform(upstream.port, site="kill")
    with devices.running(), upstream.running():
        watcher = asyncio.create_task(platform.run(), name="platform")
        try:
            await asyncio.wait_for(platform.subscribed.wait(), 5)
            async with gateway_process(config) as gw:
                await gw.wait_for(r"mqtt\[devices\]: connected")
                await gw.wait_for(r"mqtt\[upstream\]: connected")
                await publish(devices.port, "dev/E1/trapped", "1")
                await platform.wait_count(1)
                entrapment = platform.orders()[0]
                assert entrapment["category"] == "elevator_entrapment"
                assert entrapment["status"] == "open" and entrapment["seq"] == 1

                upstream.stop()
                await gw.wait_for(r"mqtt\[upstream\]: connection .* lost")
                # Three alarms during the outage, in this order of time: P1, P0, P1.
                for topic, category in [("dev/leak1/wet", "water_leak"),
                                        ("dev/panel/fire", "fire_alarm"),
                                        ("dev/door1/forced", "door_forced")]:
                    await publish(devices.port, topic, "1")
                    await gw.wait_for(rf"work order \S+ raised \(P\d {category}")
                await gw.kill()  # all three are on disk: the log line follows the commit

            async with gateway_process(config) as gw:
                await gw.wait_for(r"outbox: 6 message\(s\) left by the previous run")
                await gw.wait_for(r"mqtt\[upstream\]: .* unavailable")
                upstream.start()
                await platform.wait_count(4)
                await gw.wait_for(r"mqtt\[upstream\]: connected")
                await asyncio.sleep(0.5)  # anything sent twice would arrive by now
                assert await gw.stop() == 0, gw.text
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    orders = platform.orders()
    ids = [o["id"] for o in orders]
    assert len(ids) == len(set(ids)) == 4, f"each work order exactly once by id: {ids}"
    assert [(o["category"], o["priority"]) for o in orders[1:]] == [
        ("fire_alarm", "P0"), ("water_leak", "P1"), ("door_forced", "P1")], \
        "after the outage: by priority, then by time"
    assert all(o["seq"] == 1 and o["status"] == "open" for o in orders)
    alarms = sorted(str(a["alarm_id"]) for a in platform.alarms())
    assert alarms == ["fire@panel", "forced@door1", "leak@leak1", "trapped@E1"], \
        "nothing else lost: every alarm transition arrived once as well"
