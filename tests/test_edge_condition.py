"""The ``becomes`` (change) condition: "the door opened while locked", on the fake clock.

Readings go through the bus into the real rule evaluator (and, at the end, from a real
mosquitto through the MQTT driver with the bundled access door profile).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aiomqtt
import pytest
from pydantic import ValidationError

from drivers.mqtt import build_mqtt_drivers
from gateway.alarms import AlarmEngine, AlarmEvent, Detection, LifecycleState, RuleEvaluator
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import MqttDevice, RuleConfig, load_config_text
from gateway.model import Quality, Reading, Value
from tests.rules_support import RuleRig, running_rigs
from tests.support import Mosquitto

SITE = """
site: {{id: s1, name: s, gateway_id: g}}
devices:
  - id: D1
    driver: modbus-tcp
    host: 127.0.0.1
    kind: door
    points: [{{name: open, address: 0, type: bit, bit: 0}}, {{name: locked, address: 0, type: bit, bit: 1}}, {{name: status, address: 1}}]
rules:
  - id: forced
    kind: door
    when: {when}
    for: {delay}
    clear_for: {clear_for}
    category: door_forced
    priority: P1
    message: {{zh: 强行开门, en: forced}}
"""
WHILE_LOCKED = "{point: open, becomes: true, while: {point: locked, eq: true}}"


class Rig(RuleRig):
    """One evaluator on the fake clock, fed messages of the door D1."""

    async def message(self, quality: Quality = Quality.GOOD, **values: Value) -> None:
        """One message of D1: all its readings are queued before the evaluator runs."""
        await self.publish("D1", quality, **values)


@pytest.fixture
async def make_rig(fake_clock: FakeClock) -> AsyncIterator[Callable[..., Rig]]:
    async with running_rigs() as runner:

        def make(when: str = WHILE_LOCKED, delay: str = "0s", clear_for: str = "0s") -> Rig:
            text = SITE.format(when=when, delay=delay, clear_for=clear_for)
            return runner.start(Rig(fake_clock, load_config_text(text)))

        yield make


async def test_door_opening_while_locked_raises_and_opening_unlocked_does_not(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    rig = make_rig()
    await rig.message(open=False, locked=True)
    await fake_clock.advance(10)
    # A valid card: the lock releases, then the door opens.
    await rig.message(open=False, locked=False)
    await fake_clock.advance(1)
    await rig.message(open=True, locked=False)
    await fake_clock.advance(5)
    await rig.message(open=False, locked=False)
    await fake_clock.advance(3)
    await rig.message(open=False, locked=True)
    await fake_clock.advance(10)
    assert rig.states == [], "opening an unlocked door is not an alarm"
    # Forced: the door opens while the lock stays engaged.
    await rig.message(open=True, locked=True)
    assert rig.timed == [(True, 29.0)]


async def test_lock_released_in_the_same_message_as_the_opening_is_no_alarm(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    """One payload {open: true, locked: false}: the rule must not see the door already open
    while the lock still reads the previous message's 'locked'."""
    rig = make_rig()
    await rig.message(open=False, locked=True)
    await fake_clock.advance(10)
    await rig.message(open=True, locked=False)
    await fake_clock.advance(10)
    assert rig.states == []


async def test_while_is_judged_at_the_change_not_during_the_hold(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    """A lock that re-engages (its unlock pulse ends) while the door is still open does not
    turn a valid opening into 'opened while locked'."""
    rig = make_rig(when="{point: open, becomes: true, while: {point: locked, eq: true}, "
                        "hold: 10s}")
    await rig.message(open=False, locked=False)
    await fake_clock.advance(1)
    await rig.message(open=True, locked=False)
    await fake_clock.advance(3)
    await rig.message(open=True, locked=True)
    await fake_clock.advance(20)
    assert rig.states == []


async def test_all_is_judged_throughout_the_hold(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    """The other way to write it: ``all`` holds whenever both parts hold within the hold."""
    rig = make_rig(when="{all: [{point: open, becomes: true, hold: 10s}, "
                        "{point: locked, eq: true}]}")
    await rig.message(open=False, locked=False)
    await fake_clock.advance(1)
    await rig.message(open=True, locked=False)
    await fake_clock.advance(3)
    await rig.message(open=True, locked=True)
    assert rig.timed == [(True, 4.0)]


async def test_the_alarm_lasts_hold_then_clear_for(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    rig = make_rig(clear_for="30s")
    await rig.message(open=False, locked=True)
    await fake_clock.advance(1)
    await rig.message(open=True, locked=True)
    await fake_clock.advance(30)
    assert rig.states == [True]
    await fake_clock.advance(10)
    # Raised at 1 s; the change is true until 6 s (hold 5 s), then 30 s of clear_for.
    assert rig.timed == [(True, 1.0), (False, 36.0)]


async def test_for_must_be_shorter_than_hold(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    rig = make_rig(delay="2s")
    await rig.message(open=False, locked=True)
    await fake_clock.advance(1)
    await rig.message(open=True, locked=True)
    await fake_clock.advance(1)
    assert rig.states == []
    await fake_clock.advance(1.5)
    assert rig.timed == [(True, 3.0)]
    with pytest.raises(ValidationError, match="not shorter than the 'hold'"):
        RuleConfig.model_validate({
            "id": "r", "kind": "door", "for": "10s", "category": "door_forced",
            "priority": "P1", "message": {"zh": "x", "en": "x"},
            "when": {"point": "open", "becomes": True}})


async def test_from_restricts_the_change_and_unknown_gaps_are_no_change(
        make_rig: Callable[..., Rig], fake_clock: FakeClock) -> None:
    rig = make_rig(when="{point: status, becomes: 2, from: 0}")
    await rig.message(status=2)  # the first reading: nothing to compare with
    await rig.message(status=1)
    await rig.message(status=2)  # 1 -> 2 is not from 0
    await fake_clock.advance(10)
    await rig.message(status=0)
    await rig.message(quality=Quality.COMM_LOSS, status=None)
    await rig.message(status=2)  # what happened during the outage is unknown
    await fake_clock.advance(10)
    assert rig.states == []
    await rig.message(status=0)
    await rig.message(status=2)
    assert rig.states == [True]


def test_becomes_is_explained_when_misused() -> None:
    with pytest.raises(ValidationError, match="hold"):
        RuleConfig.model_validate({
            "id": "r", "kind": "door", "category": "door_forced", "priority": "P1",
            "message": {"zh": "x", "en": "x"},
            "when": {"point": "open", "becomes": True, "hold": 0}})
    with pytest.raises(ValidationError, match="while"):
        RuleConfig.model_validate({
            "id": "r", "kind": "door", "category": "door_forced", "priority": "P1",
            "message": {"zh": "x", "en": "x"},
            "when": {"point": "open", "becomes": True, "while": {"point": "locked"}}})


# --------------------------------------------------------------------------- over MQTT


@pytest.mark.mosquitto
async def test_access_door_over_mqtt_opening_while_locked(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    """The bundled access door profile: one JSON state per change with every field."""
    config = load_config_text(f"""
site: {{id: s, name: s, gateway_id: g}}
brokers: {{local: {{host: 127.0.0.1, port: {mosquitto.port}, connect_timeout: 2}}}}
devices:
  - {{id: "door-{{door}}", driver: mqtt, profile: access-door-mqtt}}
rules:
  - id: opened-while-locked
    kind: access_door
    when: {{point: open, becomes: true, while: {{point: locked, eq: true}}}}
    category: door_forced
    priority: P1
    message: {{zh: x, en: x}}
""")
    bus = Bus()
    feed = bus.subscribe("alarms")
    raised: list[str] = []

    async def sink(d: Detection) -> None:
        if d.active:
            raised.append(d.device)

    rules = RuleEvaluator(config, fake_clock, sink)
    template = config.devices[0]
    assert isinstance(template, MqttDevice)
    per_state = sum(1 for p in template.points if p.topic.endswith("/state"))
    (driver,) = build_mqtt_drivers(config, fake_clock)

    def state(open_: bool, locked: bool) -> str:
        return json.dumps({"open": open_, "contact": "open" if open_ else "closed",
                           "locked": locked, "lock": "locked" if locked else "unlocked",
                           "zone": 1, "controller": "c1", "alarm": "none", "forced": False,
                           "held": False, "tamper": False, "fire_release": False,
                           "ts": 1_767_225_600})

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(driver.run(bus.publish)), tg.create_task(rules.run(feed))]
        async with asyncio.timeout(5):
            while driver.health().counters["subscribed"] < 1:
                await asyncio.sleep(0.01)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
            steps: list[tuple[str, bool, bool]] = [
                ("D1", False, True), ("D1", True, False),   # valid: unlocked as it opens
                ("D2", False, True), ("D2", True, True),    # forced
            ]
            for door, open_, locked in steps:
                before = feed.delivered
                await pub.publish(f"acs/{door}/state", state(open_, locked), qos=1)
                async with asyncio.timeout(5):
                    while feed.delivered < before + per_state or not feed.queue.empty():
                        await asyncio.sleep(0.01)
                await fake_clock.advance(1)
        for task in tasks:
            task.cancel()
    assert raised == ["door-D2"]



async def test_a_latching_change_alarm_stays_until_an_operator_resets_it(
        fake_clock: FakeClock) -> None:
    """Through the whole alarm engine: the change ends after its hold, the alarm stays
    latched (acknowledge, then reset), as an operator must go and look at the door."""
    config = load_config_text(SITE.format(when=WHILE_LOCKED, delay="0s", clear_for="0s")
                              .replace("    clear_for: 0s\n", "    latching: true\n"))
    bus = Bus()
    feed = bus.subscribe("alarms")
    announced: list[AlarmEvent] = []

    async def sink(event: AlarmEvent) -> None:
        announced.append(event)

    engine = AlarmEngine(config, fake_clock, sink)
    task = asyncio.create_task(engine.run(feed))
    try:
        for open_ in (False, True):
            for point, value in (("open", open_), ("locked", True)):
                await bus.publish(Reading("D1", point, value, Quality.GOOD, fake_clock.time()))
            await fake_clock.advance(1)
        await fake_clock.advance(60)
        record = engine.book.get("forced@D1")
        assert record is not None and record.lifecycle is LifecycleState.LATCHED
        assert [str(e.state) for e in announced] == ["active", "cleared"]
        await engine.actions.acknowledge("forced@D1", actor="guard")
        await engine.actions.reset("forced@D1", actor="guard", reason="door checked")
        assert engine.book.get("forced@D1").lifecycle is LifecycleState.NORMAL  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
