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
    assert rig.ucm_orders() == [(1, "raised", "open", True, None)], \
        "no alarm_cleared while the alarm is latched"
    ended = [e for e in rig.announced if e.alarm_id == UCM and e.state is AlarmState.CLEARED]
    assert [(e.transition, e.latched) for e in ended] == [(Transition.RETURNED, True)], \
        "consumers hear that the condition ended, marked latched"

    await rig.engine.actions.acknowledge(UCM, actor="王工")
    assert rig.ucm_orders()[-1][1] != "alarm_cleared", "acknowledging is not resetting"
    await rig.engine.actions.reset(UCM, actor="王工", reason="UCMP released on site")
    assert rig.ucm_orders()[-1] == (2, "alarm_cleared", "alarm_cleared", False, "王工")
    assert rig.orders[-1].alarm_reset_note == "UCMP released on site"
    record = rig.engine.book.get(UCM)
    assert record is not None and record.base_state is LifecycleState.NORMAL


async def test_a_latched_car_that_moves_again_keeps_its_one_order(rig: Rig) -> None:
    await rig.poll(RUNAWAY, 3)
    await rig.poll(STOPPED, 10)
    await rig.poll(RUNAWAY, 3)  # it moves again before anyone reset it: same incident
    await rig.poll(STOPPED, 10)
    assert rig.ucm_orders() == [(1, "raised", "open", True, None)]
    await rig.engine.actions.acknowledge(UCM, actor="op")
    await rig.engine.actions.reset(UCM, actor="op")
    assert [o[1] for o in rig.ucm_orders()] == ["raised", "alarm_cleared"]


async def test_other_elevator_alarms_still_clear_by_themselves(rig: Rig) -> None:
    # The door-open-while-running rule does not latch: its order clears when the doors close.
    running_open = {**PARKED, "car_status": 1, "door_status": 2}
    await rig.poll(running_open, 3)
    await rig.poll(PARKED, 3)
    events = [(o.event, o.alarm_active) for o in rig.orders
              if o.alarm_id == "elevator.door-open-while-running@E1"]
    assert events == [("raised", True), ("alarm_cleared", False)]
