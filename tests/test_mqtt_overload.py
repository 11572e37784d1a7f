"""Overload of the device broker: the broker is pushed back on, telemetry is shed and counted,
and no life-safety trigger is ever lost.

A real mosquitto, the real gateway (MQTT driver, point stage, alarm engine) and a paho
publisher in a subprocess that floods as fast as it can. The gateway's telemetry pipeline is
stuck on purpose (every telemetry reading waits for the test before the point stage takes it),
so the flood is past its capacity whatever the machine and its load: nothing here asserts a
time, and the counts are exact.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers.mqtt import MqttDriver
from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.metrics import link_metrics
from gateway.model import Reading
from tests.gateway_support import drivers_subscribed, running_gateway
from tests.support import Mosquitto, kill_if_running

pytestmark = pytest.mark.mosquitto

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
brokers:
  local: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 1}},
           max_queued_messages: 100}}
devices:
  - id: "sensor-{{n}}"
    driver: mqtt
    kind: meter
    points:
      - {{name: temp, topic: "tele/{{n}}", path: temp, type: number}}
  - id: "panel-{{n}}"
    driver: mqtt
    kind: fire_panel
    points:
      - {{name: fire, topic: "fire/{{n}}", path: fire, type: bool}}
rules:
  - id: fire
    kind: fire_panel
    category: fire_alarm
    priority: P0
    when: {{point: fire, eq: true}}
    message: {{zh: "{{device_name}}火警", en: "{{device_name}} fire"}}
  # A P3 rule does not make its point life-safety: temp stays telemetry, and may be shed.
  - id: hot
    kind: meter
    category: comfort
    priority: P3
    when: {{point: temp, gt: 1000000}}
    message: {{zh: "{{device_name}}过热", en: "{{device_name}} hot"}}
"""

#: Publishes ``total`` telemetry messages (QoS 1) to tele/<i % 10>, and after every
#: ``total // canaries`` of them one fire/<k> {"fire": true}; prints how many it sent.
PUBLISHER = """
import json, sys
import paho.mqtt.client as mqtt

port, total, canaries = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.connect("127.0.0.1", port)
client.loop_start()
every = total // canaries
sent = fired = 0
last = None
for i in range(total):
    last = client.publish(f"tele/{i % 10}", json.dumps({"temp": i}), qos=1)
    sent += 1
    if (i + 1) % every == 0 and fired < canaries:
        last = client.publish(f"fire/{fired}", b'{"fire": true}', qos=1)
        fired += 1
last.wait_for_publish(30)
client.disconnect()
client.loop_stop()
print(sent, fired)
"""


@asynccontextmanager
async def stuck_gateway(port: int, clock: FakeClock
                        ) -> AsyncIterator[tuple[Gateway, Counter[str], asyncio.Event]]:
    """The gateway, with every telemetry reading held before the point stage until the event
    is set; and how many readings of each point the point stage took."""
    gateway = Gateway(load_config_text(SITE.format(port=port)), clock=clock)
    take = gateway.points._sink
    seen: Counter[str] = Counter()
    release = asyncio.Event()

    async def slow(readings: Sequence[Reading], *, urgent: bool = False) -> None:
        if any(reading.point == "temp" for reading in readings):
            await release.wait()
        await take(readings, urgent=urgent)
        seen.update(reading.point for reading in readings)

    gateway.points._sink = slow
    async with running_gateway(gateway, lambda: drivers_subscribed(gateway, 2)):
        yield gateway, seen, release


def mqtt_driver(gateway: Gateway) -> MqttDriver:
    driver = gateway.drivers[0]
    assert isinstance(driver, MqttDriver)
    return driver


async def flood(port: int, total: int, canaries: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, str(port), str(total), str(canaries),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(40):
            out, err = await proc.communicate()
    finally:
        await kill_if_running(proc)
    assert proc.returncode == 0, err.decode()
    assert out.split() == [str(total).encode(), str(canaries).encode()]


async def until(check: Callable[[], bool], clock: FakeClock, limit: float = 40) -> None:
    async with asyncio.timeout(limit):
        while not check():
            await asyncio.sleep(0.02)
            await clock.advance(0)


def overload_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith(("drivers.mqtt", "mqtt",
                                                                   "aiomqtt", "gateway.bus"))]


@pytest.mark.slow
async def test_a_flood_sheds_counted_telemetry_and_every_fire_alarm_gets_through(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # The broker sends without waiting for acknowledgements and queues without bound: all
    # of the flood reaches the gateway at once, so the gateway itself must shed.
    broker = Mosquitto(tmp_path, extra_conf="max_inflight_messages 0\nmax_queued_messages 0\n")
    broker.start()
    total, canaries = 10_000, 50
    try:
        async with stuck_gateway(broker.port, fake_clock) as (gateway, seen, release):
            driver = mqtt_driver(gateway)
            telemetry, safety = driver.lanes
            assert (telemetry.name, safety.name) == ("telemetry", "life-safety")
            await flood(broker.port, total, canaries)
            # All of it arrived: one telemetry message stuck in the pipeline, the newest 100
            # waiting, the rest shed; every fire message went through meanwhile.
            await until(lambda: 1 + telemetry.waiting + telemetry.counters.shed == total,
                        fake_clock)
            await until(lambda: len(gateway.engine.active()) == canaries, fake_clock)
            assert {e.device for e in gateway.engine.active()} == {
                f"panel-{k}" for k in range(canaries)}, "every fire alarm raised"
            assert (safety.counters.taken, seen["fire"]) == (canaries, canaries)
            assert telemetry.waiting == 100

            release.set()
            await until(lambda: telemetry.counters.taken + telemetry.counters.shed == total,
                        fake_clock)
            shed = telemetry.counters.shed
            # Exact: what the point stage saw, plus what was shed, is what was published.
            assert seen["temp"] == telemetry.counters.taken == 101
            assert shed == total - 101
            assert safety.counters.shed == 0
            assert driver.health().counters["shed"] == shed
            report = gateway.health_model.report()
            assert report.detail["devices"]["mqtt[local]"]["shed"] == shed
            assert "telemetry_shed" in {r.code for r in report.reasons}
            samples = {(s.name, s.labels.get("lane")): s.value
                       for family in link_metrics(lambda: gateway.drivers)()
                       for s in family.samples}
            assert samples["propgw_mqtt_messages_shed_total", "telemetry"] == shed
            assert samples["propgw_mqtt_messages_shed_total", "life-safety"] == 0
            assert samples["propgw_mqtt_messages_taken_total", "life-safety"] == canaries
            # Bounded: never more than max_queued_messages telemetry messages waiting.
            assert telemetry.counters.peak == 100
            assert safety.counters.peak <= canaries
            # One WARNING when shedding began (a summary at most every 60 s of clock time,
            # which stood still): never one line per message.
            lines = overload_warnings(caplog)
            assert len(lines) == 1 and "shedding" in lines[0], lines
    finally:
        broker.stop()


async def test_a_message_is_acknowledged_only_once_taken_so_the_broker_holds_the_rest(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # mosquitto's default window: at most 20 unacknowledged messages out per client.
    broker = Mosquitto(tmp_path, extra_conf="max_queued_messages 0\n")
    broker.start()
    total, canaries = 500, 10
    try:
        async with stuck_gateway(broker.port, fake_clock) as (gateway, seen, release):
            telemetry, safety = mqtt_driver(gateway).lanes
            await flood(broker.port, total, canaries)  # the broker has all of them
            await until(lambda: len(gateway.engine.active()) == canaries, fake_clock)
            await until(lambda: telemetry.waiting >= 19, fake_clock)
            await asyncio.sleep(0.3)  # room for anything the broker would still send
            # One message in the stuck pipeline, the rest of the window waiting: nothing was
            # acknowledged, so the broker sent nothing more (an acknowledgement on arrival
            # would have let all 500 in, and the lane would have shed beyond 100).
            assert telemetry.waiting + 1 <= 20
            assert telemetry.counters.taken == 0 and telemetry.counters.shed == 0

            release.set()
            await until(lambda: telemetry.counters.taken + telemetry.counters.shed == total,
                        fake_clock)
            assert seen["temp"] == telemetry.counters.taken
            assert telemetry.counters.peak <= 100
            assert safety.counters.shed == 0
            assert len(overload_warnings(caplog)) <= 1
    finally:
        broker.stop()
