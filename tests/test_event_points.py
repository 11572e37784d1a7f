"""Event-only MQTT devices: a message like ``{"type": "FIRE"}`` becomes an alarm, the point
keeps its value until the next message, and ``expire_after`` lets it fall back.

A real mosquitto, the real gateway (MQTT driver, point stage, alarm engine) and the fake clock:
only messages travel in real time; every delay is fake time moved by the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import pytest

from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import load_config_text
from tests.gateway_support import drivers_subscribed, running_gateway, until
from tests.support import Mosquitto

pytestmark = pytest.mark.mosquitto

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
brokers: {{local: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 1}}}}}}
devices:
  # A panel that only speaks when something happens; its point falls back after 30 s.
  - id: FP1
    driver: mqtt
    kind: fire_panel
    points:
      - {{name: event_type, topic: panel/FP1/event, path: type, type: string,
          expire_after: 30s, expire_to: none}}
  # The same panel without expiry: the last event stays the value.
  - id: FP2
    driver: mqtt
    kind: fire_panel
    points:
      - {{name: event_type, topic: panel/FP2/event, path: type, type: string}}
rules:
  - id: fire-event
    kind: fire_panel
    category: fire_alarm
    priority: P0
    when: {{point: event_type, eq: FIRE}}
    message: {{zh: "{{device_name}}火警", en: "{{device_name}} fire"}}
"""


@asynccontextmanager
async def gateway_on(port: int, clock: FakeClock) -> AsyncIterator[Gateway]:
    gateway = Gateway(load_config_text(SITE.format(port=port)), clock=clock)
    async with running_gateway(gateway, lambda: drivers_subscribed(gateway)):
        yield gateway


def active(gateway: Gateway) -> set[str]:
    return {e.device for e in gateway.engine.active()}


async def test_an_event_raises_an_alarm_and_expiry_lets_it_fall_back(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    async with (gateway_on(mosquitto.port, fake_clock) as gateway,
                aiomqtt.Client("127.0.0.1", mosquitto.port) as panel):
        for device in ("FP1", "FP2"):
            await panel.publish(f"panel/{device}/event", b'{"type": "FIRE"}', qos=1)
        await until(lambda: active(gateway) == {"FP1", "FP2"}, fake_clock)

        await fake_clock.advance(29)
        assert active(gateway) == {"FP1", "FP2"}, "the point keeps the event until 30 s"
        await fake_clock.advance(1)
        assert active(gateway) == {"FP2"}, "FP1's event expired: it reads 'none'"
        fp1 = gateway.readings.snapshot("FP1")["devices"]["FP1"]["last"]["event_type"]
        assert (fp1["value"], fp1["quality"]) == ("none", "good")
        await fake_clock.advance(600)
        assert active(gateway) == {"FP2"}, "without expiry the last event stays the value"

        # The next FIRE is a new alarm on FP1; a different event replaces FP2's value.
        await panel.publish("panel/FP1/event", b'{"type": "FIRE"}', qos=1)
        await panel.publish("panel/FP2/event", b'{"type": "RESET"}', qos=1)
        await until(lambda: active(gateway) == {"FP1"}, fake_clock)
