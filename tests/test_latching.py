"""Latching alarms end to end: the elevator pack's unintended-car-movement rule through the real
alarm engine (rules, lifecycle, operator actions) into the real work-order desk, on the fake
clock. A UCMP trip is released by a person (EN 81-20 5.6.7): the work order must not read as
cleared when the car stops, only when an operator resets the alarm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.alarms import AlarmEngine, AlarmEvent, AlarmState, LifecycleState, Transition
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.model import Quality, Reading, Value
from gateway.workorders import WorkOrder, WorkOrderDesk

SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
devices:
  - {id: E1, name: 1号梯, driver: modbus-tcp, host: h, profile: elevator-modbus}
detectors: [elevator]
"""
UCM = "elevator.unintended-car-movement@E1"
PARKED: dict[str, Value] = {
    "car_status": 0, "car_direction": 0, "door_zone": 1, "car_position": 5, "door_status": 1,
    "passenger_status": 2, "service_mode": 1, "power_status": 1, "alarm_button": 0,
    "up_limit": False, "down_limit": False, "fault_code": 0, "door_open_request": 0}
#: The car runs away from the floor with its doors open.
RUNAWAY: dict[str, Value] = {**PARKED, "car_status": 1, "car_direction": 1, "door_zone": 2,
                             "door_status": 2}
#: The UCMP has stopped it outside the door zone (doors still not closed).
STOPPED: dict[str, Value] = {**RUNAWAY, "car_status": 0, "car_direction": 0}


class Rig:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.bus = Bus()
        self.feed = self.bus.subscribe("alarms")
        self.orders: list[WorkOrder] = []
        self.announced: list[AlarmEvent] = []
        config = load_config_text(SITE)

        async def on_order(order: WorkOrder) -> None:
            self.orders.append(order)

        self.desk = WorkOrderDesk(config.site, clock, on_order)

        async def on_alarm(event: AlarmEvent) -> None:
            self.announced.append(event)
            await self.desk.handle(event)

        self.engine = AlarmEngine(config, clock, on_alarm)

    async def poll(self, values: dict[str, Value], seconds: int) -> None:
        for _ in range(seconds):
            for point, value in values.items():
                await self.bus.publish(Reading("E1", point, value, Quality.GOOD,
                                               self.clock.time()))
            await self.clock.advance(1)

    def ucm_order(self) -> WorkOrder:
        """The latest version of the unintended-movement order."""
        return [o for o in self.orders if o.alarm_id == UCM][-1]

    def ucm_orders(self) -> list[tuple[int, str, str, bool, str | None]]:
        return [(o.seq, o.event, o.status, o.alarm_active, o.alarm_reset_by)
                for o in self.orders if o.alarm_id == UCM]


@pytest.fixture
async def rig(fake_clock: FakeClock) -> AsyncIterator[Rig]:
    r = Rig(fake_clock)
    task = asyncio.create_task(r.engine.run(r.feed))
    await fake_clock.advance(0)
    yield r
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_unintended_movement_stays_in_alarm_until_an_operator_resets_it(rig: Rig) -> None:
    await rig.poll(PARKED, 3)
    await rig.poll(RUNAWAY, 3)
    assert rig.ucm_orders() == [(1, "raised", "open", True, None)]
    await rig.poll(STOPPED, 120)  # the car has stopped: the condition is over
    record = rig.engine.book.get(UCM)
    assert record is not None and record.base_state is LifecycleState.LATCHED
    assert rig.ucm_orders() == [(1, "raised", "open", True, None),
                                (2, "alarm_latched", "open", True, None)], \
        "no alarm_cleared while the alarm is latched: it is reported latched, still active"
    assert rig.ucm_order().alarm_latched
    ended = [e for e in rig.announced if e.alarm_id == UCM and e.state is AlarmState.CLEARED]
    assert [(e.transition, e.latched) for e in ended] == [(Transition.RETURNED, True)], \
        "consumers hear that the condition ended, marked latched"

    await rig.engine.actions.acknowledge(UCM, actor="王工")
    assert rig.ucm_orders()[-1][1] != "alarm_cleared", "acknowledging is not resetting"
    await rig.engine.actions.reset(UCM, actor="王工", reason="UCMP released on site")
    assert rig.ucm_orders()[-1] == (3, "alarm_cleared", "alarm_cleared", False, "王工")
    assert not rig.ucm_order().alarm_latched
    assert rig.orders[-1].alarm_reset_note == "UCMP released on site"
    record = rig.engine.book.get(UCM)
    assert record is not None and record.base_state is LifecycleState.NORMAL


async def test_a_latched_car_that_moves_again_keeps_its_one_order(rig: Rig) -> None:
    await rig.poll(RUNAWAY, 3)
    await rig.poll(STOPPED, 10)
    await rig.poll(RUNAWAY, 3)  # it moves again before anyone reset it: same incident
    await rig.poll(STOPPED, 10)
    assert [o[:2] for o in rig.ucm_orders()] == [
        (1, "raised"), (2, "alarm_latched"), (3, "alarm_reactivated"), (4, "alarm_latched")]
    assert [o.alarm_latched for o in rig.orders if o.alarm_id == UCM] == [
        False, True, False, True]
    await rig.engine.actions.acknowledge(UCM, actor="op")
    await rig.engine.actions.reset(UCM, actor="op")
    assert rig.ucm_orders()[-1][1] == "alarm_cleared"


async def test_other_elevator_alarms_still_clear_by_themselves(rig: Rig) -> None:
    # The door-open-while-running rule does not latch: its order clears when the doors close.
    running_open = {**PARKED, "car_status": 1, "door_status": 2}
    await rig.poll(running_open, 3)
    await rig.poll(PARKED, 3)
    events = [(o.event, o.alarm_active) for o in rig.orders
              if o.alarm_id == "elevator.door-open-while-running@E1"]
    assert events == [("raised", True), ("alarm_cleared", False)]


PANEL_SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
brokers: {devices: {host: 127.0.0.1}}
devices:
  - {id: FP1, name: 消防主机, driver: mqtt, broker: devices, kind: fire_panel,
     points: [{name: event, topic: fire/FP1/event, path: event, type: string},
              {name: event_zone, topic: fire/FP1/event, path: zone, type: int}]}
rules:
  - {id: z1, kind: fire_panel, when: {all: [{point: event, eq: fire}, {point: event_zone, eq: 1}]},
     latching: true, category: fire_alarm, priority: P0, message: {zh: 一区火警, en: zone 1}}
  - {id: z2, kind: fire_panel, when: {all: [{point: event, eq: fire}, {point: event_zone, eq: 2}]},
     latching: true, category: fire_alarm, priority: P0, message: {zh: 二区火警, en: zone 2}}
"""


async def test_a_zone_on_fire_again_after_its_reset_holds_the_order_it_is_on(
        fake_clock: FakeClock) -> None:
    # Zone 2 joined zone 1's order; zone 1 was reset while zone 2 held the order, then caught
    # fire again. The order must not be cleared by zone 2's reset while zone 1 is latched.
    config = load_config_text(PANEL_SITE)
    bus, orders = Bus(), list[WorkOrder]()

    async def on_order(order: WorkOrder) -> None:
        orders.append(order)

    desk = WorkOrderDesk(config.site, fake_clock, on_order, policies=config.work_orders)

    async def on_alarm(event: AlarmEvent) -> None:
        await desk.handle(event)

    engine = AlarmEngine(config, fake_clock, on_alarm)
    task = asyncio.create_task(engine.run(bus.subscribe("alarms")))

    async def panel(event: str, zone: int) -> None:
        for point, value in (("event", event), ("event_zone", zone)):
            await bus.publish(Reading("FP1", point, value, Quality.GOOD, fake_clock.time()))
        await fake_clock.advance(1)

    async def reset(alarm_id: str) -> None:
        await engine.actions.acknowledge(alarm_id, actor="op")
        await engine.actions.reset(alarm_id, actor="op")

    try:
        await fake_clock.advance(0)
        await panel("fire", 1)
        await panel("fire", 2)
        await reset("z1@FP1")
        await panel("fire", 1)  # zone 1 again, while zone 2 still holds the order
        await panel("reset", 0)
        await reset("z2@FP1")
        assert [(o.event, o.alarm_active, o.alarm_latched) for o in orders] == [
            ("raised", True, False), ("alarm_latched", True, True),
            ("alarm_joined", True, False), ("alarm_latched", True, True)], \
            "zone 1 is latched again: zone 2's reset does not clear the order"
        await reset("z1@FP1")
        assert [(o.seq, o.event, o.alarm_active, o.alarm_latched, o.alarm_reset_by)
                for o in orders[4:]] == [(5, "alarm_cleared", False, False, "op")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
