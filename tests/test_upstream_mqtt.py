"""Upstream MQTT publisher against a real mosquitto: status, delivery from the outbox, outage,
priority order, and the platform's answers coming back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.clock import FakeClock, SystemClock
from gateway.config import GatewayConfig, load_config_text
from gateway.errors import StatusRefused
from gateway.outbox import Outbox, OutboxItem
from gateway.supervisor import Supervisor
from gateway.upstream import UpstreamPublisher
from gateway.workorders import StatusAnswer
from tests.support import Mosquitto

TARGETS = {"mqtt": {"work-orders", "alarms", "telemetry"}}


def config_for(port: int) -> GatewayConfig:
    return load_config_text(f"""
site: {{id: s1, name: 测试, gateway_id: gw1}}
brokers:
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
""")


def item(payload: dict[str, object], priority: str = "P3") -> OutboxItem:
    return OutboxItem(kind="work_order", channel="work-orders", key=str(payload),
                      payload=json.dumps(payload).encode(), priority=priority)


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
async def test_status_and_messages_arrive(mosquitto: Mosquitto, watcher: Watcher,
                                          tmp_path: Path) -> None:
    clock = SystemClock()
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=clock) as outbox:
        publisher = UpstreamPublisher(config_for(mosquitto.port), clock, outbox)
        task = asyncio.create_task(publisher.run())
        await outbox.put(item({"id": "a"}, "P0"))
        await watcher.wait_for(2)
        assert watcher.messages[0] == ("pm/s1/gateway/status",
                                       {"state": "online", "site_id": "s1", "gateway_id": "gw1"})
        assert watcher.messages[1] == ("pm/s1/work-orders", {"id": "a"})
        async with asyncio.timeout(5):
            while publisher.pending:  # confirmed by PUBACK, then gone from the outbox
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.wait_for(3)
        assert watcher.messages[2][1]["state"] == "offline", "a clean stop says offline"
        assert publisher.sent == 1


@pytest.mark.mosquitto
async def test_messages_wait_out_an_outage_and_leave_in_priority_order(
        mosquitto: Mosquitto, fake_clock: FakeClock, tmp_path: Path) -> None:
    # The fake clock holds the publisher in its reconnect back-off until the platform-side
    # watcher is subscribed again, so nothing can be published before anyone listens.
    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=fake_clock) as outbox:
        publisher = UpstreamPublisher(config_for(mosquitto.port), fake_clock, outbox)
        mosquitto.stop()
        task = asyncio.create_task(publisher.run())
        for i, priority in enumerate(["P2", "P3", "P0", "P1", "P0"]):
            await outbox.put(item({"n": i, "p": priority}, priority))
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
        assert [(m["p"], m["n"]) for m in orders] == [("P0", 2), ("P0", 4), ("P1", 3),
                                                     ("P2", 0), ("P3", 1)]
        for t in (task, watch):
            t.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)


@pytest.mark.mosquitto
async def test_platform_answers_come_back_and_bad_ones_are_ignored(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    answers: list[tuple[str, StatusAnswer]] = []

    async def on_answer(order_id: str, answer: StatusAnswer) -> None:
        answers.append((order_id, answer))

    clock = SystemClock()
    async with Outbox(None, targets=TARGETS, clock=clock) as outbox:
        publisher = UpstreamPublisher(config_for(mosquitto.port), clock, outbox,
                                      on_answer=on_answer)
        assert publisher.answers_topic == "pm/s1/work-orders/+/status"
        task = asyncio.create_task(publisher.run())
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.subscribe("pm/s1/gateway/status", qos=1)
            async with asyncio.timeout(5):
                async for _ in platform.messages:  # online: the gateway is subscribed
                    break
            await platform.publish("pm/s1/work-orders/w1/status", b"not json", qos=1)
            await platform.publish("pm/s1/work-orders/w1/status",
                                   json.dumps({"id": "w2", "status": "acknowledged"}), qos=1)
            await platform.publish("pm/s1/work-orders/w1/status", json.dumps(
                {"status": "on_site", "by": "张三", "at": "2026-01-01T00:06:00+00:00"}), qos=1)
            async with asyncio.timeout(5):
                while not answers:
                    await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(i, a.status, a.by) for i, a in answers] == [("w1", "on_site", "张三")]
    warnings = [r.message for r in caplog.records if r.name == "gateway.upstream._mqtt"]
    assert len(warnings) == 2 and "malformed" in warnings[0] and "another order" in warnings[1]


@pytest.mark.mosquitto
async def test_publisher_keeps_sending_after_the_broker_restarts(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The fault drill that found it: after one broker restart the publisher logged "connected
    again", published "online" and then never sent another work order."""
    clock = SystemClock()

    async def on_answer(order_id: str, answer: StatusAnswer) -> None:
        pass

    async with Outbox(tmp_path / "o.db", targets=TARGETS, clock=clock) as outbox:
        publisher = UpstreamPublisher(config_for(mosquitto.port), clock, outbox,
                                      on_answer=on_answer)
        supervisor = Supervisor(clock)
        task = asyncio.create_task(supervisor.run("upstream", publisher.run, critical=True))
        for round_ in range(3):
            await outbox.put(item({"round": round_}, "P0"))
            async with asyncio.timeout(10):
                while publisher.pending:
                    await asyncio.sleep(0.01)
            assert publisher.connected and publisher.progress.connected
            mosquitto.stop()
            async with asyncio.timeout(10):
                while publisher.connected:
                    await asyncio.sleep(0.01)
            assert publisher.progress.connected is False
            mosquitto.start()
            async with asyncio.timeout(10):
                while not publisher.connected:
                    await asyncio.sleep(0.01)
        await outbox.put(item({"round": "last"}, "P0"))
        async with asyncio.timeout(10):
            while publisher.pending:
                await asyncio.sleep(0.01)
        assert publisher.sent == 4
        (status,) = supervisor.stages()
        assert status.restarts == 0 and status.state == "running"
        supervisor.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.mosquitto
async def test_a_refused_answer_is_one_warning_not_a_traceback(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    seen = asyncio.Event()

    async def on_answer(order_id: str, answer: StatusAnswer) -> None:
        seen.set()
        raise StatusRefused(order_id=order_id, reason="'at' is 8 years ahead")

    clock = SystemClock()
    async with Outbox(None, targets=TARGETS, clock=clock) as outbox:
        publisher = UpstreamPublisher(config_for(mosquitto.port), clock, outbox,
                                      on_answer=on_answer)
        task = asyncio.create_task(publisher.run())
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.subscribe("pm/s1/gateway/status", qos=1)
            async with asyncio.timeout(5):
                async for _ in platform.messages:
                    break
            await platform.publish("pm/s1/work-orders/w1/status", json.dumps(
                {"status": "acknowledged", "at": "2034-01-01T00:00:00+00:00"}), qos=1)
            await asyncio.wait_for(seen.wait(), 5)
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
