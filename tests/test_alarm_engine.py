"""Alarm engine on the fake clock: on-delay, off-delay, unknown values, messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import pytest

from gateway.alarms import AlarmEngine, AlarmEvent, AlarmState
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading

CONFIG = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
devices:
  - id: E1
    name: 1号梯
    driver: modbus-tcp
    host: 127.0.0.1
    kind: elevator
    location: {building: "2", floor: "5"}
    points:
      - {name: car_status, address: 0}
      - {name: door_zone, address: 1}
      - {name: door_status, address: 2}
      - {name: passenger_status, address: 3}
      - {name: alarm_button, address: 4}
rules:
  - id: trapped
    kind: elevator
    for: 30s
    clear_for: 5s
    when:
      all:
        - {point: car_status, eq: 0}
        - {point: door_zone, eq: 2}
        - {point: door_status, eq: 1}
        - any: [{point: passenger_status, eq: 1}, {point: alarm_button, eq: 1}]
    category: elevator_entrapment
    priority: P0
    message: {zh: "{device_name}（{location}）困人，楼层{car_position}", en: "{device_name} at {location}: trapped"}
"""

TRAPPED = {"car_status": 0, "door_zone": 2, "door_status": 1, "passenger_status": 1,
           "alarm_button": 0}


@pytest.fixture
def config() -> GatewayConfig:
    return load_config_text(CONFIG)


class Harness:
    def __init__(self, config: GatewayConfig, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[AlarmEvent] = []
        self.bus = Bus()
        self.feed = self.bus.subscribe("alarms")

        async def sink(event: AlarmEvent) -> None:
            self.events.append(event)

        self.engine = AlarmEngine(config, clock, sink)

    async def send(self, values: Mapping[str, object], quality: Quality = Quality.GOOD) -> None:
        for point, value in values.items():
            await self.bus.publish(Reading("E1", point, value if quality is Quality.GOOD else None,  # type: ignore[arg-type]
                                           quality, self.clock.time()))
        await self.clock.advance(0)

    @property
    def states(self) -> list[tuple[AlarmState, float]]:
        return [(e.state, e.mono) for e in self.events]


@pytest.fixture
async def harness(config: GatewayConfig, fake_clock: FakeClock) -> AsyncIterator[Harness]:
    h = Harness(config, fake_clock)
    task = asyncio.create_task(h.engine.run(h.feed))
    yield h
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_raises_only_after_the_on_delay(harness: Harness) -> None:
    t0 = harness.clock.monotonic()
    await harness.send(TRAPPED)
    await harness.clock.advance(29.9)
    assert harness.events == []
    await harness.clock.advance(0.1)
    assert harness.states == [(AlarmState.ACTIVE, t0 + 30)]
    event = harness.events[0]
    assert (event.priority, event.category, event.device) == ("P0", "elevator_entrapment", "E1")
    assert event.evidence["passenger_status"] == 1
    assert event.condition_since == harness.clock.time() - 30


async def test_condition_flicker_restarts_the_on_delay(harness: Harness) -> None:
    await harness.send(TRAPPED)
    await harness.clock.advance(20)
    await harness.send({"door_status": 2})  # doors opened: not trapped
    await harness.send({"door_status": 1})
    t_restart = harness.clock.monotonic()
    await harness.clock.advance(29)
    assert harness.events == []
    await harness.clock.advance(1)
    assert harness.states == [(AlarmState.ACTIVE, t_restart + 30)]


async def test_car_at_floor_with_doors_open_is_not_trapped(harness: Harness) -> None:
    await harness.send({**TRAPPED, "door_zone": 1, "door_status": 2})
    await harness.clock.advance(600)
    assert harness.events == []


async def test_alarm_button_counts_when_occupancy_is_unknown_sensor(harness: Harness) -> None:
    await harness.send({**TRAPPED, "passenger_status": 2, "alarm_button": 1})
    await harness.clock.advance(30)
    assert [e.state for e in harness.events] == [AlarmState.ACTIVE]


async def test_comm_loss_cancels_pending_but_never_clears_active(harness: Harness) -> None:
    await harness.send(TRAPPED)
    await harness.clock.advance(10)
    await harness.send({"door_zone": None}, quality=Quality.COMM_LOSS)
    await harness.clock.advance(60)
    assert harness.events == [], "an unknown value must not confirm an entrapment"

    await harness.send(TRAPPED)
    await harness.clock.advance(30)
    assert len(harness.events) == 1
    await harness.send({name: None for name in TRAPPED}, quality=Quality.COMM_LOSS)
    await harness.clock.advance(3600)
    assert [e.state for e in harness.events] == [AlarmState.ACTIVE], \
        "a silent elevator must not make an entrapment disappear"


async def test_clears_after_the_off_delay(harness: Harness) -> None:
    await harness.send(TRAPPED)
    await harness.clock.advance(30)
    await harness.send({"door_zone": 1, "door_status": 2})
    t_false = harness.clock.monotonic()
    await harness.clock.advance(4.9)
    assert len(harness.events) == 1
    await harness.clock.advance(0.1)
    assert harness.states[-1] == (AlarmState.CLEARED, t_false + 5)
    assert harness.engine.active() == []


async def test_message_interpolates_device_location_and_points(harness: Harness) -> None:
    await harness.send({**TRAPPED, "car_position": 7})
    await harness.clock.advance(30)
    event = harness.events[0]
    assert event.message_zh == "1号梯（2号楼 5层）困人，楼层7"
    assert event.message_en == "1号梯 at Bldg 2, floor 5: trapped"



async def test_message_shows_booleans_and_missing_values_as_an_engineer_writes_them(
        fake_clock: FakeClock) -> None:
    # A bit or JSON boolean reads true/false (as in the config), never Python's True/False;
    # a point without a value reads "-", never "None".
    h = Harness(load_config_text(CONFIG.replace(
        'en: "{device_name} at {location}: trapped"',
        'en: "button {alarm_button} fan {fan} lamp {lamp}"')), fake_clock)
    task = asyncio.create_task(h.engine.run(h.feed))
    try:
        await h.send({**TRAPPED, "fan": True, "lamp": None})
        await h.clock.advance(30)
        assert h.events[0].message_en == "button 0 fan true lamp -"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(("config", "level"), [
    pytest.param(load_config_text(CONFIG.replace("priority: P0", f"priority: {p}")), level,
                 id=p)
    for p, level in [("P0", logging.CRITICAL), ("P1", logging.ERROR), ("P2", logging.WARNING),
                     ("P3", logging.WARNING)]])
async def test_alarm_lines_are_levelled_by_priority(
        harness: Harness, level: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.alarms")
    await harness.send(TRAPPED)
    await harness.clock.advance(30)
    await harness.send({"passenger_status": 0})
    await harness.clock.advance(5)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "gateway.alarms._rules"]
    priority = harness.events[0].priority
    assert lines == [
        (level, f"alarm {priority} trapped on E1: 1号梯 at Bldg 2, floor 5: trapped"),
        (logging.INFO, "alarm trapped on E1 returned to normal")], \
        "journalctl -p picks out life safety; a return to normal is routine"
    assert [getattr(r, "priority", None) for r in caplog.records
            if r.name == "gateway.alarms._rules"] == [priority, None]


async def test_readings_of_unknown_devices_are_ignored(harness: Harness) -> None:
    await harness.bus.publish(Reading("nope", "car_status", 0, Quality.GOOD, 0.0))
    await harness.clock.advance(100)
    assert harness.events == []


async def test_readings_are_judged_message_by_message_across_batches_urgent_first(
        config: GatewayConfig, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The evaluator takes whole batches; it still judges each message (one device, one
    # receive time) once, with all of its readings, even when a driver handed it over in
    # pieces, and a life-safety batch queued behind a routine one is taken first.
    engine = AlarmEngine(config, fake_clock, lambda _: asyncio.sleep(0))
    rules = engine.rules
    judged: list[list[tuple[str, str]]] = []
    real = rules.process_message

    async def spy(readings: list[Reading]) -> None:
        judged.append([(r.device, r.point) for r in readings])
        await real(readings)

    monkeypatch.setattr(rules, "process_message", spy)
    bus = Bus()
    feed = bus.subscribe("alarms")
    t0 = fake_clock.time()

    def r(device: str, point: str, ts: float) -> Reading:
        return Reading(device, point, 1, Quality.GOOD, ts)

    await bus.publish([r("E1", "car_status", t0), r("E1", "door_zone", t0),
                       r("X9", "a", t0), r("E1", "door_status", t0 + 1)])
    await bus.publish([r("E1", "alarm_button", t0 + 1)])  # the same message, in two calls
    await bus.publish([r("E1", "door_zone", t0 + 2)])
    await bus.publish([r("FP1", "fire", t0 + 3)], urgent=True)
    task = asyncio.create_task(rules.run(feed))
    try:
        async with asyncio.timeout(2):
            await feed.queue.join()
            while len(judged) < 5:
                await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert judged == [
        [("FP1", "fire")],
        [("E1", "car_status"), ("E1", "door_zone")], [("X9", "a")],
        [("E1", "door_status"), ("E1", "alarm_button")], [("E1", "door_zone")]]
