"""Work orders: one per incident, stable id, response window, updates with seq."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

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


def other(rule: str, state: AlarmState, ts: float, *, device: str = "E1",
          category: str = "elevator_entrapment") -> AlarmEvent:
    return AlarmEvent(
        alarm_id=f"{rule}@{device}", rule_id=rule, device=device, device_name="1号梯",
        category=category, priority="P0", state=state, message_zh="按钮", message_en="button",
        location=Location(building="2"), ts=ts, condition_since=ts, mono=0.0,
        evidence={"alarm_button": 1})


async def test_another_rule_on_the_same_incident_joins_its_order(fake_clock: FakeClock) -> None:
    """The entrapment and the alarm button of one car are one incident: one work order."""
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    desk = WorkOrderDesk(SITE, fake_clock, sink)
    first = await desk.handle(event(AlarmState.ACTIVE, 1_800_000_000.0))
    joined = await desk.handle(other("button", AlarmState.ACTIVE, 1_800_000_005.0))
    assert first is not None and joined is not None and joined.id == first.id
    assert (joined.seq, joined.event, joined.joined_alarms) == (2, "alarm_joined",
                                                                ["button@E1"])
    assert joined.evidence == {"car_status": 0, "alarm_button": 1}
    # The entrapment rule clears first: the button still holds, so nothing is sent.
    assert await desk.handle(event(AlarmState.CLEARED, 1_800_000_050.0)) is None
    last = await desk.handle(other("button", AlarmState.CLEARED, 1_800_000_060.0))
    assert last is not None and (last.id, last.seq, last.status) == (first.id, 3,
                                                                     "alarm_cleared")
    # Another device, or another category on the same device, is another incident.
    elsewhere = await desk.handle(other("button", AlarmState.ACTIVE, 1_800_000_070.0,
                                        device="E2"))
    fault = await desk.handle(other("fault", AlarmState.ACTIVE, 1_800_000_070.0,
                                    category="elevator_fault"))
    assert elsewhere is not None and fault is not None
    assert len({first.id, elsewhere.id, fault.id}) == 3
    assert len(sent) == 5


@pytest.mark.parametrize(("priority", "level"), [
    ("P0", logging.CRITICAL), ("P1", logging.ERROR), ("P2", logging.WARNING),
    ("P3", logging.WARNING)])
async def test_the_raised_line_is_levelled_by_priority(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture, priority: str,
        level: int) -> None:
    async def sink(order: WorkOrder) -> None:
        return None

    caplog.set_level(logging.INFO, logger="gateway.workorders")
    desk = WorkOrderDesk(SITE, fake_clock, sink)
    order = await desk.handle(event(AlarmState.ACTIVE, 1.5e9, priority))
    await desk.handle(event(AlarmState.CLEARED, 1.5e9 + 60, priority))
    assert order is not None
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "gateway.workorders._desk"]
    assert lines == [
        (level, f"work order {order.id} raised ({priority} elevator_entrapment, respond by "
                f"{order.respond_by}): Elevator entrapment: 1号梯"),
        (logging.INFO, f"work order {order.id}: alarm trapped@E1 cleared")]


async def test_a_latched_order_restored_after_a_restart_is_told_its_alarm_is_back(
        fake_clock: FakeClock) -> None:
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    ts = fake_clock.time()
    before = WorkOrderDesk(SITE, fake_clock, sink)
    raised = await before.handle(event(AlarmState.ACTIVE, ts))
    assert raised is not None
    latched = raised.model_copy(update={"seq": 2, "event": "alarm_latched",
                                        "alarm_latched": True})
    desk = WorkOrderDesk(SITE, fake_clock, sink)
    assert desk.restore([latched]) == 1
    again = await desk.handle(event(AlarmState.ACTIVE, ts + 60))
    assert again is not None and (again.id, again.seq, again.event, again.alarm_active,
                                  again.alarm_latched) == (
        raised.id, 3, "alarm_reactivated", True, False), "not a second order, not latched"
