"""Fault drills on the way up: the platform's broker down or killed mid-stream, the platform's
REST API refusing connections and failing; the gateway SIGKILLed 20 times while work orders are
in flight. Every work order arrives, by (id, seq); none is raised twice; the health says what
is going on. See tests/drill_support.py for how it is counted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.drill_support import (
    HttpPlatform,
    MqttPlatform,
    gateway,
    http_upstream,
    mqtt_platform,
    mqtt_upstream,
    reasons,
    rng,
    set_trapped,
    site_config,
    tally,
)
from tests.support import Mosquitto, free_port

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.drill]


def brokers(tmp_path: Path) -> tuple[Mosquitto, Mosquitto]:
    """The device broker, and the platform's: persistent, and with one message at a time in
    flight to each subscriber, so that what the broker itself delivers again after a restart
    (its own at-least-once) is at most one message per restart."""
    (tmp_path / "dev").mkdir()
    (tmp_path / "up").mkdir()
    return Mosquitto(tmp_path / "dev"), Mosquitto(tmp_path / "up", persistent=True,
                                                   extra_conf="max_inflight_messages 1\n")


async def wait_orders(platform: MqttPlatform | HttpPlatform,
                      want: set[tuple[str, int]] | None = None, *, alarms: int = 0,
                      deadline: float = 30.0) -> list[dict[str, Any]]:
    """Until the platform has an order for ``alarms`` alarms and every (alarm, seq) in
    ``want``."""
    async with asyncio.timeout(deadline):
        while True:
            orders = platform.orders()
            have = {(o["alarm_id"], o["seq"]) for o in orders}
            if len({o["alarm_id"] for o in orders}) >= alarms and (want or set()) <= have:
                return orders
            await asyncio.sleep(0.05)


def upstream_down(h: dict[str, Any]) -> bool:
    return h["status"] != "ok" and "upstream_down" in reasons(h)


def waiting(h: dict[str, Any], target: str, n: int) -> bool:
    t = h["targets"][target]
    return t["pending"] >= n and "messages_waiting" in reasons(h) and not h["ok"]


def all_clear(h: dict[str, Any], target: str) -> bool:
    status: str = h["status"]
    pending: int = h["targets"][target]["pending"]
    return status == "ok" and pending == 0


async def test_drill_upstream_broker_down_for_a_while(tmp_path: Path) -> None:
    devices, upstream = brokers(tmp_path)
    status_port = free_port()
    config = site_config(tmp_path, devices_port=devices.port, elevators=4,
                         upstream=mqtt_upstream(upstream.port), status_port=status_port)
    with devices.running(), upstream.running():
        async with mqtt_platform(upstream.port) as platform, \
                gateway(config, status_port) as gw:
            await gw.start()
            await set_trapped(devices.port, {1: 1})
            await wait_orders(platform, {("trapped@E1", 1)})
            await gw.wait_health(lambda h: all_clear(h, "mqtt"))

            upstream.stop()
            await gw.wait_health(upstream_down)
            await set_trapped(devices.port, {2: 1, 3: 1, 4: 1, 1: 0})
            during = await gw.wait_health(lambda h: waiting(h, "mqtt", 4))
            honest = not during["targets"]["mqtt"]["connected"]
            await asyncio.sleep(3)  # down for a while
            upstream.start()
            await wait_orders(platform, {("trapped@E1", 2)}, alarms=4)
            after = await gw.wait_health(lambda h: all_clear(h, "mqtt"))
            honest = honest and after["reasons"] == []
            assert await gw.stop() == 0
    row = tally("upstream MQTT broker down 3 s, 4 messages meanwhile", orders=platform.orders(),
                alarms=[f"trapped@E{n}" for n in range(1, 5)], state_dir=tmp_path / "state",
                log=gw.text, health_honest=honest)
    assert (row.lost, row.second_orders, row.tracebacks, row.health_honest) == (0, 0, 0, True)
    assert row.duplicated is not None and row.duplicated <= 2, \
        "at most what was in flight: gateway to broker, broker to us"


#: A first ladder step of 2 s: the escalation update, which carries the whole order, is what
#: brings an order to the platform whose broker lost it after confirming it (below).
SHORT_LADDER = """
work_orders: {priorities: {P0: {ladder: [
  {role: control_room, name: {zh: 中控室, en: Control room}, within: 2s},
  {role: patrol, name: {zh: 巡逻岗, en: Patrol}, within: 10m}]}}}
"""


async def test_drill_upstream_broker_killed_mid_stream(tmp_path: Path) -> None:
    """mosquitto confirms (PUBACK) a message before it saves it: killed in between, it loses
    what it confirmed. The gateway cannot see that; the drill tells it apart (the gateway logs
    each confirmation at DEBUG) and requires every order to reach the platform anyway, by the
    escalation update that follows an unanswered order."""
    devices, upstream = brokers(tmp_path)
    status_port = free_port()
    n = 30
    config = site_config(tmp_path, devices_port=devices.port, elevators=n,
                         upstream=mqtt_upstream(upstream.port), status_port=status_port,
                         extra=SHORT_LADDER)
    kills = 3
    honest = True
    with devices.running(), upstream.running():
        async with mqtt_platform(upstream.port, record=tmp_path / "platform.jsonl") as platform, \
                gateway(config, status_port, log_level="DEBUG") as gw:
            await gw.start()
            await gw.wait_for(r"mqtt\[upstream\]: connected")
            for k in range(kills):  # a burst of alarms, the broker killed while they stream
                batch = {f"trapped@E{i}" for i in range(1 + k * 10, 11 + k * 10)}
                await set_trapped(devices.port, {int(a.split("@E")[1]): 1 for a in batch})
                async with asyncio.timeout(20):
                    while len({o["alarm_id"] for o in platform.orders()} & batch) < 2:
                        await asyncio.sleep(0.005)
                upstream.kill()
                during = await gw.wait_health(upstream_down)
                honest = honest and not during["targets"]["mqtt"]["connected"]
                await asyncio.sleep(1)
                upstream.start()
                await wait_orders(platform, alarms=(k + 1) * 10)
            after = await gw.wait_health(lambda h: all_clear(h, "mqtt"))
            honest = honest and after["reasons"] == []
            assert await gw.stop() == 0
    row = tally(f"upstream MQTT broker SIGKILLed mid-stream ({kills}x, {n} orders)",
                orders=platform.orders(), alarms=[f"trapped@E{i}" for i in range(1, n + 1)],
                state_dir=tmp_path / "state", log=gw.text, health_honest=honest, tried=kills)
    assert (row.lost, row.second_orders, row.tracebacks, row.health_honest) == (0, 0, 0, True)
    assert row.duplicated is not None and row.duplicated <= 2 * kills, \
        "at most what was in flight at each kill: gateway to broker, broker to platform"


async def test_drill_http_platform_unreachable_then_failing_then_fine(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    devices = Mosquitto(tmp_path / "dev")
    status_port = free_port()
    platform = HttpPlatform()
    config = site_config(tmp_path, devices_port=devices.port, elevators=5,
                         upstream=http_upstream(platform.port), status_port=status_port)
    with devices.running():
        async with gateway(config, status_port) as gw:
            await platform.start()
            await gw.start()
            await set_trapped(devices.port, {1: 1})
            await wait_orders(platform, {("trapped@E1", 1)})

            await platform.stop()  # connection refused
            await set_trapped(devices.port, {2: 1, 3: 1, 1: 0})
            during = await gw.wait_health(lambda h: waiting(h, "http", 3)
                                          and "upstream_down" in reasons(h))
            honest = "Connect" in str(during["targets"]["http"]["last_error"])
            platform.failing = True  # up again, but answering 503
            await platform.start()
            await set_trapped(devices.port, {4: 1})
            failing = await gw.wait_health(
                lambda h: "503" in str(h["targets"]["http"]["last_error"]))
            honest = honest and "upstream_down" in reasons(failing)
            platform.failing = False
            await set_trapped(devices.port, {5: 1})
            await wait_orders(platform, {("trapped@E1", 2)}, alarms=5)
            after = await gw.wait_health(lambda h: all_clear(h, "http"))
            honest = honest and after["reasons"] == []
            assert await gw.stop() == 0
            await platform.stop()
    keys = [r.key for r in platform.delivered()]
    assert len(keys) == len(set(keys)), "a 2xx ends a message: never sent again"
    row = tally("HTTP platform refusing connections, then 503, then 200",
                orders=platform.orders(), alarms=[f"trapped@E{n}" for n in range(1, 6)],
                state_dir=tmp_path / "state", log=gw.text, health_honest=honest)
    assert (row.lost, row.duplicated, row.second_orders, row.tracebacks, row.health_honest) \
        == (0, 0, 0, 0, True)


async def test_drill_gateway_sigkilled_20_times_with_work_orders_in_flight(
        tmp_path: Path) -> None:
    devices, upstream = brokers(tmp_path)
    status_port = free_port()
    rounds = 20
    config = site_config(tmp_path, devices_port=devices.port, elevators=2 * rounds,
                         upstream=mqtt_upstream(upstream.port), status_port=status_port)
    random = rng(20261205)
    cleared: set[int] = set()
    with devices.running(), upstream.running():
        async with mqtt_platform(upstream.port) as platform, \
                gateway(config, status_port) as gw:
            for r in range(rounds):
                await gw.start()
                changes = {2 * r + 1: 1, 2 * r + 2: 1}
                # Clear an older alarm whose order the platform has: its update is in flight.
                raised = {int(o["alarm_id"].split("@E")[1]) for o in platform.orders()}
                older = sorted(raised - cleared)
                if older:
                    victim = random.choice(older)
                    changes[victim] = 0
                    cleared.add(victim)
                await asyncio.sleep(random.uniform(0.0, 0.6))  # sometimes while starting up
                await set_trapped(devices.port, changes)
                await asyncio.sleep(random.uniform(0.0, 0.4))
                await gw.kill()
            await gw.start()
            await wait_orders(platform, {(f"trapped@E{c}", 2) for c in cleared},
                              alarms=2 * rounds, deadline=60)
            after = await gw.wait_health(lambda h: all_clear(h, "mqtt"), deadline=30)
            assert await gw.stop() == 0
    row = tally(f"gateway SIGKILLed at random moments ({rounds}x)", orders=platform.orders(),
                alarms=[f"trapped@E{n}" for n in range(1, 2 * rounds + 1)],
                state_dir=tmp_path / "state", log=gw.text, health_honest=after["ok"],
                tried=rounds)
    assert (row.lost, row.second_orders, row.tracebacks) == (0, 0, 0)
    assert row.duplicated is not None and row.duplicated <= rounds, \
        "at most what was in flight at each kill"
