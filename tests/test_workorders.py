"""Work orders: one per incident, stable id, response window, updates with seq."""

from __future__ import annotations

import datetime as dt

from gateway.alarms import AlarmEvent, AlarmState
from gateway.clock import FakeClock
from gateway.config import Location, SiteConfig
from gateway.workorders import RESPONSE_WINDOWS, WorkOrder, WorkOrderDesk

SITE = SiteConfig(id="s1", name="阳光花园", gateway_id="gw1")


def event(state: AlarmState, ts: float, priority: str = "P0") -> AlarmEvent:
    return AlarmEvent(
        alarm_id="trapped@E1", rule_id="trapped", device="E1", device_name="1号梯",
        category="elevator_entrapment", priority=priority, state=state,
        message_zh="困人", message_en="trapped", location=Location(building="2", floor="5"),
        ts=ts, condition_since=ts - 30, mono=0.0, evidence={"car_status": 0})


async def test_one_order_per_incident_then_an_update_on_clear(fake_clock: FakeClock) -> None:
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    desk = WorkOrderDesk(SITE, fake_clock, sink)
    first = await desk.handle(event(AlarmState.ACTIVE, 1_800_000_000.0))
    again = await desk.handle(event(AlarmState.ACTIVE, 1_800_000_010.0))
    cleared = await desk.handle(event(AlarmState.CLEARED, 1_800_000_100.0))
    assert first is not None and again is None and cleared is not None
    assert [(o.id, o.seq, o.status) for o in sent] == [
        (first.id, 1, "open"), (first.id, 2, "alarm_cleared")]
    raised = dt.datetime.fromisoformat(first.raised_at)
    assert dt.datetime.fromisoformat(first.respond_by) - raised == dt.timedelta(
        seconds=RESPONSE_WINDOWS["P0"])
    assert first.detected_at < first.raised_at
    assert first.title.zh == "电梯困人：1号梯" and first.location.building == "2"

    reopened = await desk.handle(event(AlarmState.ACTIVE, 1_800_001_000.0))
    assert reopened is not None and reopened.id != first.id, "a new incident gets a new id"


async def test_ids_are_stable_for_the_same_incident(fake_clock: FakeClock) -> None:
    async def sink(order: WorkOrder) -> None:
        return None

    a = await WorkOrderDesk(SITE, fake_clock, sink).handle(event(AlarmState.ACTIVE, 1.5e9))
    b = await WorkOrderDesk(SITE, fake_clock, sink).handle(event(AlarmState.ACTIVE, 1.5e9))
    assert a is not None and b is not None and a.id == b.id


async def test_alarms_without_work_order_flag_make_none(fake_clock: FakeClock) -> None:
    async def sink(order: WorkOrder) -> None:
        raise AssertionError("no order expected")

    desk = WorkOrderDesk(SITE, fake_clock, sink)
    quiet = event(AlarmState.ACTIVE, 1.5e9)
    object.__setattr__(quiet, "work_order", False)
    assert await desk.handle(quiet) is None
