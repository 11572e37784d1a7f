"""Upstream publisher against a real mosquitto: status, delivery, outage, priority order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from gateway.clock import FakeClock, SystemClock
from gateway.config import GatewayConfig, load_config_text
from gateway.upstream import UpstreamPublisher
from tests.support import Mosquitto


def config_for(port: int) -> GatewayConfig:
    return load_config_text(f"""
site: {{id: s1, name: 测试, gateway_id: gw1}}
brokers:
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
""")


class Watcher:
    """A platform-side subscriber collecting (topic, payload) pairs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[str, dict[str, object]]] = []
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.subscribe("pm/s1/#", qos=1)
            self.ready.set()
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                self.messages.append((str(message.topic), json.loads(payload)))

    async def wait_for(self, count: int, deadline: float = 10.0) -> None:
        async with asyncio.timeout(deadline):
            while len(self.messages) < count:
                await asyncio.sleep(0.01)


@pytest.fixture
async def watcher(mosquitto: Mosquitto) -> AsyncIterator[Watcher]:
    w = Watcher(mosquitto.port)
    task = asyncio.create_task(w.run())
    await asyncio.wait_for(w.ready.wait(), 5)
    yield w
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.mosquitto
async def test_status_and_messages_arrive(mosquitto: Mosquitto, watcher: Watcher) -> None:
    publisher = UpstreamPublisher(config_for(mosquitto.port), SystemClock())
    task = asyncio.create_task(publisher.run())
    await publisher.publish("work-orders", json.dumps({"id": "a"}), priority="P0")
    await watcher.wait_for(2)
    assert watcher.messages[0] == ("pm/s1/gateway/status",
                                   {"state": "online", "site_id": "s1", "gateway_id": "gw1"})
    assert watcher.messages[1] == ("pm/s1/work-orders", {"id": "a"})
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await watcher.wait_for(3)
    assert watcher.messages[2][1]["state"] == "offline", "a clean stop says offline"


@pytest.mark.mosquitto
async def test_messages_wait_out_an_outage_and_leave_in_priority_order(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    # The fake clock holds the publisher in its reconnect back-off until the platform-side
    # watcher is subscribed again, so nothing can be published before anyone listens.
    publisher = UpstreamPublisher(config_for(mosquitto.port), fake_clock)
    mosquitto.stop()
    task = asyncio.create_task(publisher.run())
    for i, priority in enumerate(["P2", "P3", "P0", "P1", "P0"]):
        await publisher.publish("work-orders", json.dumps({"n": i, "p": priority}),
                                priority=priority)
    async with asyncio.timeout(5):
        while fake_clock.pending == 0:  # failed to connect, now backing off
            await asyncio.sleep(0.01)
    assert publisher.sent == 0 and publisher.pending == 5
    mosquitto.start()
    watcher = Watcher(mosquitto.port)
    watch = asyncio.create_task(watcher.run())
    await asyncio.wait_for(watcher.ready.wait(), 5)
    await fake_clock.advance(60)
    await watcher.wait_for(6)
    assert watcher.messages[0][1]["state"] == "online"
    orders = [m for t, m in watcher.messages if t.endswith("work-orders")]
    assert [(m["p"], m["n"]) for m in orders] == [("P0", 2), ("P0", 4), ("P1", 3), ("P2", 0),
                                                 ("P3", 1)]
    for t in (task, watch):
        t.cancel()
    await asyncio.gather(task, watch, return_exceptions=True)
