"""A config reload in the alarm engine, on the fake clock: rules change, alarms carry on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.alarms import AlarmState, Transition
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.reload import restart_only_changes
from tests.test_alarm_engine import Harness

SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
devices:
  - {id: E1, driver: modbus-tcp, host: 127.0.0.1, kind: elevator,
     points: [{name: temp, address: 0}, {name: load, address: 1}]}
"""


def site(*rules: str, head: str = SITE) -> GatewayConfig:
    return load_config_text(head + "rules:\n" + "".join(f"  - {r}\n" for r in rules))


HOT = ("{id: hot, kind: elevator, for: 30s, when: {point: temp, gt: %d}, category: equipment_fault,"
       " priority: P2, message: {zh: 过热, en: hot}}")
HEAVY = ("{id: heavy, kind: elevator, when: {point: load, gt: 100}, category: equipment_fault,"
         " priority: P3, message: {zh: 超载, en: heavy}}")


@pytest.fixture
async def harness(fake_clock: FakeClock) -> AsyncIterator[Harness]:
    h = Harness(site(HOT % 50), fake_clock)
    task = asyncio.create_task(h.engine.run(h.feed))
    await fake_clock.advance(0)
    yield h
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def states(h: Harness) -> list[tuple[str, AlarmState]]:
    return [(e.alarm_id, e.state) for e in h.events]


async def test_an_unchanged_rule_keeps_its_running_on_delay(harness: Harness) -> None:
    t0 = harness.clock.monotonic()
    await harness.send({"temp": 60})
    await harness.clock.advance(20)
    summary = await harness.engine.reconfigure(site(HOT % 50, HEAVY))
    assert summary.startswith("1 rule instance(s) kept, 1 new or changed, 0 dropped")
    await harness.clock.advance(9.9)
    assert harness.events == []
    await harness.clock.advance(0.1)
    assert [(e.alarm_id, e.mono) for e in harness.events] == [("hot@E1", t0 + 30)], \
        "the 30 s on-delay went on counting through the reload"


async def test_a_new_rule_judges_the_last_readings_at_once(harness: Harness) -> None:
    await harness.send({"load": 120})
    await harness.engine.reconfigure(site(HOT % 50, HEAVY))
    await harness.clock.advance(0)
    assert states(harness) == [("heavy@E1", AlarmState.ACTIVE)], \
        "no need to wait for the next reading"


async def test_a_changed_threshold_keeps_the_alarm_and_decides_its_end(
        harness: Harness) -> None:
    await harness.send({"temp": 60})
    await harness.clock.advance(30)
    assert states(harness) == [("hot@E1", AlarmState.ACTIVE)]
    incident = harness.events[0].incident_id

    await harness.engine.reconfigure(site(HOT % 55))  # still above: nothing to say
    await harness.clock.advance(60)
    assert states(harness) == [("hot@E1", AlarmState.ACTIVE)], "raised once, not again"
    assert harness.engine.book.get("hot@E1").incident_id == incident  # type: ignore[union-attr]

    await harness.engine.reconfigure(site(HOT % 70))  # now below: the alarm ends at once
    await harness.clock.advance(0)
    assert states(harness) == [("hot@E1", AlarmState.ACTIVE), ("hot@E1", AlarmState.CLEARED)]
    assert harness.events[1].incident_id == incident


async def test_a_removed_rule_closes_its_alarm(harness: Harness) -> None:
    await harness.send({"temp": 60})
    await harness.clock.advance(30)
    summary = await harness.engine.reconfigure(site(HEAVY))
    assert summary.endswith("1 alarm(s) closed because their rule or device is gone")
    assert states(harness) == [("hot@E1", AlarmState.ACTIVE), ("hot@E1", AlarmState.CLEARED)]
    assert harness.events[1].transition is Transition.CLOSED
    assert harness.engine.book.get("hot@E1") is None
    await harness.send({"temp": 90})
    await harness.clock.advance(60)
    assert len(harness.events) == 2, "the removed rule detects nothing any more"


def test_settings_only_a_restart_applies_are_named() -> None:
    old = site(HOT % 50)
    assert restart_only_changes(old, site(HOT % 70, HEAVY)) == []
    moved = site(HOT % 50, head=SITE.replace("name: 测试小区", "name: 新名字")
                 + "state_dir: /tmp/elsewhere\nalarms: {chatter: {activations: 9}}\n")
    assert restart_only_changes(old, moved) == ["site.name", "state_dir", "alarms.chatter.activations"]
