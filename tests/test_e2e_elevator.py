"""End to end over real sockets: elevator simulator (Modbus TCP) → gateway → mosquitto upstream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.app import Gateway
from gateway.config import load_config_text
from simulators.elevator import ElevatorSim
from simulators.modbus_server import SimModbusServer
from tests.support import Mosquitto, free_port

SITE = """
site: {{id: e2e, name: 测试小区, gateway_id: gw1}}
brokers:
  platform: {{host: 127.0.0.1, port: {mqtt}, reconnect: {{initial: 0.1, max: 1}}}}
upstream: {{broker: platform, topic_prefix: pm}}
devices:
  - id: E1
    name: 3号楼1号梯
    driver: modbus-tcp
    host: 127.0.0.1
    port: {e1}
    profile: elevator-modbus
    poll_interval: 100ms
    timeout: 500ms
    location: {{building: "3", zone: 西区}}
  - id: E2
    driver: modbus-tcp
    host: 127.0.0.1
    port: {e2}
    profile: elevator-modbus
    poll_interval: 100ms
    timeout: 500ms
rules:
  - id: trapped
    kind: elevator
    for: 1s
    when:
      all:
        - {{point: car_status, eq: 0}}
        - {{point: door_zone, eq: 2}}
        - {{point: door_status, eq: 1}}
        - any: [{{point: passenger_status, eq: 1}}, {{point: alarm_button, eq: 1}}]
    category: elevator_entrapment
    priority: P0
    message: {{zh: "{{device_name}}困人，{{car_position}}层附近", en: "{{device_name}} trapped near floor {{car_position}}"}}
"""


@pytest.mark.mosquitto
async def test_entrapment_becomes_an_upstream_work_order(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    e1 = ElevatorSim("E1", traffic=False)
    e2 = ElevatorSim("E2", traffic=True, seed=7)
    e1.model.position = 5.0
    e1.refresh()
    received: list[tuple[str, dict[str, Any]]] = []  # JSON as the platform gets it
    async with (SimModbusServer([e1.unit], port=free_port()) as s1,
                SimModbusServer([e2.unit], port=free_port()) as s2,
                aiomqtt.Client("127.0.0.1", mosquitto.port) as platform):
        await platform.subscribe("pm/e2e/#", qos=1)
        config = load_config_text(SITE.format(mqtt=mosquitto.port, e1=s1.port, e2=s2.port))
        gateway = Gateway(config)
        stop = asyncio.Event()

        async def collect() -> None:
            async for message in platform.messages:
                assert isinstance(message.payload, bytes)
                received.append((str(message.topic), json.loads(message.payload)))
                if any(t.endswith("/work-orders") for t, _ in received):
                    return

        async with asyncio.TaskGroup() as tg:
            tg.create_task(gateway.run(shutdown_trigger=stop.wait))
            sims = [tg.create_task(e1.run()), tg.create_task(e2.run())]
            await gateway.started.wait()
            # A car at a floor with its doors shut and a passenger is not trapped *between*
            # floors: nothing may fire while E1 sits at floor 5.
            e1.model.occupied = True
            e1.refresh()
            await asyncio.sleep(1.5)
            assert gateway.engine.active() == []

            e1.model.position = 5.5
            e1.model.stop_between_floors()
            e1.refresh()
            async with asyncio.timeout(10):
                await collect()
            stop.set()
            for task in sims:
                task.cancel()

    by_topic = {t: m for t, m in received}
    order = by_topic["pm/e2e/work-orders"]
    assert order["category"] == "elevator_entrapment" and order["priority"] == "P0"
    assert order["status"] == "open" and order["seq"] == 1
    assert order["location"] == {"site": "e2e", "building": "3", "floor": None, "zone": "西区",
                                 "room": None, "device": "E1", "device_name": "3号楼1号梯"}
    assert order["description"]["zh"] == "3号楼1号梯困人，6层附近"
    assert order["evidence"] == {"alarm_button": 0, "car_status": 0, "door_status": 1,
                                 "door_zone": 2, "passenger_status": 1}
    alarm = by_topic["pm/e2e/alarms"]
    assert alarm["state"] == "active" and alarm["alarm_id"] == "trapped@E1"
    assert by_topic["pm/e2e/gateway/status"]["state"] == "online"
    assert all(a.device == "E1" for a in gateway.engine.active())
