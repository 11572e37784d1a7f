"""Escalation ladder, response windows and SLA breaches, on the fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from gateway.alarms import AlarmEvent, AlarmState
from gateway.clock import FakeClock
from gateway.config import Location, SiteConfig, load_config_text
from gateway.errors import StatusRefused
from gateway.workorders import StatusAnswer, WorkOrder, WorkOrderDesk

SITE = SiteConfig(id="s1", name="阳光花园", gateway_id="gw1")
MIN = 60.0


def event(clock: FakeClock, state: AlarmState = AlarmState.ACTIVE, *, priority: str = "P0",
          category: str = "elevator_entrapment") -> AlarmEvent:
    now = clock.time()
    return AlarmEvent(
        alarm_id="trapped@E1", rule_id="trapped", device="E1", device_name="1号梯",
        category=category, priority=priority, state=state, message_zh="困人",
        message_en="trapped", location=Location(building="2"), ts=now,
        condition_since=now - 30, mono=clock.monotonic(), evidence={"car_status": 0})


def _parse(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def iso_at(clock: FakeClock, offset: float) -> str:
    return dt.datetime.fromtimestamp(clock.time() + offset, tz=dt.UTC).isoformat()


@dataclass
class Rig:
    clock: FakeClock
    desk: WorkOrderDesk
    sent: list[WorkOrder] = field(default_factory=list)

    @property
    def trail(self) -> list[tuple[int, str, int, str]]:
        return [(o.seq, o.event, o.escalation.level if o.escalation else 0,
                 o.escalation.role if o.escalation else "") for o in self.sent]

    async def answer(self, order: WorkOrder, status: str, **kw: str) -> WorkOrder | None:
        result = await self.desk.apply_status(order.id, StatusAnswer.model_validate(
            {"status": status, **kw}))
        await settle(self.clock)
        return result

    async def raise_(self, ev: AlarmEvent) -> WorkOrder | None:
        result = await self.desk.handle(ev)
        await settle(self.clock)
        return result


async def settle(clock: FakeClock) -> None:
    """Let the desk's timer task see a change and arm its next deadline before time moves."""
    for _ in range(3):
        await clock.advance(0)


async def walk(clock: FakeClock, seconds: float, step: float = 30.0) -> None:
    """Move time the way it passes in production: steadily, the desk re-arming as it goes."""
    while seconds > 0:
        await clock.advance(min(step, seconds))
        await settle(clock)
        seconds -= step


@pytest.fixture
async def rig(fake_clock: FakeClock) -> AsyncIterator[Rig]:
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    desk = WorkOrderDesk(SITE, fake_clock, sink)
    task = asyncio.create_task(desk.run(), name="desk")
    yield Rig(fake_clock, desk, sent)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_unanswered_entrapment_walks_up_the_whole_ladder(rig: Rig) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None and order.escalation is not None
    assert (order.escalation.role, order.escalation.name.zh) == ("control_room", "中控室")
    assert order.acknowledge_by == order.escalation.deadline
    await walk(rig.clock, 59)
    assert len(rig.sent) == 1, "the control room has a minute"
    await walk(rig.clock, 2)
    await walk(rig.clock, 5 * MIN)
    await walk(rig.clock, 10 * MIN)
    await walk(rig.clock, 10 * MIN)
    await walk(rig.clock, 5 * MIN)
    assert rig.trail == [
        (1, "raised", 1, "control_room"),
        (2, "escalated", 2, "patrol"),          # 1 min
        (3, "escalated", 3, "engineering"),     # 5 min
        (4, "escalated", 4, "supervisor"),      # 15 min
        (5, "pre_alert", 4, "supervisor"),      # 15 min: maintenance window half gone
        (6, "pre_alert", 4, "supervisor"),      # 25 min
        (7, "unacknowledged", 4, "supervisor"),  # 30 min: top of the ladder, still nobody
    ]
    top = rig.sent[-1]
    assert top.status == "open" and top.id == order.id
    assert top.escalation is not None and top.escalation.name.en == "Supervisor"
    await walk(rig.clock, 24 * 3600)
    assert len(rig.sent) == 7, "nothing more to escalate to"


async def test_escalation_stops_on_acknowledgement(rig: Rig) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None
    await walk(rig.clock, 2 * MIN)  # patrol is on it now
    acked = await rig.answer(order, "acknowledged", by="巡逻岗 李四")
    assert acked is not None and acked.status == "acknowledged" and acked.seq == 3
    assert acked.acknowledged_at is not None and acked.status_by == "巡逻岗 李四"
    assert [(b.window, b.late_by_s) for b in acked.breaches] == [("acknowledge", 60.0)]
    await walk(rig.clock, 3 * 3600)
    assert [e for _, e, _, _ in rig.trail] == [
        "raised", "escalated", "acknowledged", "pre_alert", "pre_alert"], \
        "reminders about the maintenance window go on; escalation does not"
    assert rig.sent[-1].escalation is not None and rig.sent[-1].escalation.level == 2


async def test_on_site_after_respond_by_is_a_breach_of_its_size(rig: Rig) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None
    await walk(rig.clock, 30)
    acked = await rig.answer(order, "acknowledged")
    assert acked is not None and acked.breaches == []
    await walk(rig.clock, 6 * MIN + 30)  # 7 min after raising; respond_by was 5 min
    on_site = await rig.answer(order, "on_site", by="张三")
    assert on_site is not None and on_site.status == "on_site"
    assert [(b.window, b.late_by_s, b.due) for b in on_site.breaches] == [
        ("on_site", 120.0, order.respond_by)]
    # The platform may say when it happened; the breach is measured from that.
    await walk(rig.clock, 34 * MIN)
    resolved = await rig.answer(order, "resolved", at=iso_at(rig.clock, -MIN))
    assert resolved is not None and resolved.status == "resolved"
    assert [(b.window, b.late_by_s) for b in resolved.breaches] == [
        ("on_site", 120.0), ("resolve", 600.0)]
    assert resolved.follow_up_by is not None
    await walk(rig.clock, 49 * 3600)
    # Reminded once, and kept until the follow-up is recorded (the console lists it).
    assert rig.sent[-1].event == "follow_up_due" and rig.desk.tracks(order.id)
    assert [o.event for o in rig.sent].count("follow_up_due") == 1


@pytest.mark.parametrize(("offset", "why"), [
    pytest.param(None, "ahead of the gateway's clock", id="year-9999"),
    pytest.param(301, "ahead of the gateway's clock", id="301s-ahead"),
    pytest.param(-10 * MIN - 301, "before the work order was raised", id="301s-before-raising"),
])
async def test_an_answer_time_no_clock_skew_explains_is_refused(
        rig: Rig, offset: float | None, why: str, caplog: pytest.LogCaptureFixture) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None
    await walk(rig.clock, 10 * MIN)
    count = len(rig.sent)
    at = "9999-12-31T23:59:59+00:00" if offset is None else iso_at(rig.clock, offset)
    with pytest.raises(StatusRefused, match=why) as refused:
        await rig.answer(order, "on_site", at=at)
    assert refused.value.order_id == order.id and at in refused.value.reason
    assert len(rig.sent) == count and rig.desk.tracks(order.id)
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert record.levelname == "WARNING" and not record.exc_info
    # The order is untouched: a sound answer afterwards is applied as usual.
    on_site = await rig.answer(order, "on_site")
    assert on_site is not None and on_site.status == "on_site"


async def test_an_answer_time_within_the_skew_is_clamped_to_raised_and_now(rig: Rig) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None
    acked = await rig.answer(order, "acknowledged", at=iso_at(rig.clock, -299))
    assert acked is not None and acked.acknowledged_at == order.raised_at
    await walk(rig.clock, 7 * MIN)
    on_site = await rig.answer(order, "on_site", at=iso_at(rig.clock, 299))
    assert on_site is not None and on_site.on_site_at == on_site.updated_at
    assert [(b.window, b.late_by_s) for b in on_site.breaches] == [("on_site", 120.0)], \
        "measured to the gateway's now, not to a moment that has not come yet"


@pytest.mark.parametrize("at", ["garbage", "2026-01-01", "2026-13-01T00:00:00Z",
                                "2026-01-01T25:00:00Z", "1" * 100])
def test_a_status_answer_time_must_be_an_iso_date_and_time(at: str) -> None:
    with pytest.raises(ValidationError, match="at"):
        StatusAnswer.model_validate({"status": "on_site", "at": at})


def test_a_status_answer_time_without_offset_is_utc() -> None:
    naive = StatusAnswer.model_validate({"status": "on_site", "at": "2026-01-01T08:00:00"})
    zulu = StatusAnswer.model_validate({"status": "on_site", "at": "2026-01-01T08:00:00Z"})
    assert naive.at is not None and zulu.at is not None
    assert _parse(naive.at + "+00:00") == _parse(zulu.at.replace("Z", "+00:00"))


async def test_old_news_and_unknown_orders_change_nothing(rig: Rig) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None
    on_site = await rig.answer(order, "on_site")
    assert on_site is not None
    again = await rig.answer(order, "acknowledged")
    assert again == on_site, "an acknowledgement after on-site is old news"
    assert await rig.desk.apply_status("nope", StatusAnswer(status="acknowledged")) is None
    rejected = await rig.answer(order, "rejected", note="误报 false alarm")
    assert rejected is not None and rejected.status == "rejected"
    assert not rig.desk.tracks(order.id)
    count = len(rig.sent)
    await walk(rig.clock, 3600)
    assert len(rig.sent) == count


async def test_a_cleared_alarm_keeps_escalating_until_someone_acknowledges(rig: Rig) -> None:
    order = await rig.raise_(event(rig.clock))
    assert order is not None
    await walk(rig.clock, 10)
    cleared = await rig.raise_(event(rig.clock, AlarmState.CLEARED))
    assert cleared is not None and cleared.status == "alarm_cleared"
    assert not cleared.alarm_active and cleared.event == "alarm_cleared"
    await walk(rig.clock, MIN)
    assert rig.sent[-1].event == "escalated" and rig.sent[-1].status == "alarm_cleared"
    acked = await rig.answer(order, "acknowledged")
    assert acked is not None and acked.status == "acknowledged"


async def test_a_restarted_desk_catches_up_in_one_step(fake_clock: FakeClock) -> None:
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    first = WorkOrderDesk(SITE, fake_clock, sink)
    order = await first.handle(event(fake_clock))
    assert order is not None
    await walk(fake_clock, 16 * MIN)  # the gateway was down: no desk ran these 16 minutes
    second = WorkOrderDesk(SITE, fake_clock, sink)
    assert second.restore([order]) == 1
    task = asyncio.create_task(second.run())
    await settle(fake_clock)
    assert [(o.seq, o.event, o.escalation.level if o.escalation else 0)
            for o in sent[1:]] == [(2, "escalated", 4), (3, "pre_alert", 4)]
    replayed = dataclasses.replace(event(fake_clock), ts=_parse(order.raised_at),
                                   condition_since=_parse(order.detected_at))
    assert await second.handle(replayed) is None, "an event handed on twice: one order"
    # The engine raises the still-trapped alarm again after a restart that lost the alarm
    # journal: the platform already has this incident's order, so it carries on.
    assert await second.handle(event(fake_clock)) is None, "never a second order"
    cleared = await second.handle(event(fake_clock, AlarmState.CLEARED))
    assert cleared is not None and cleared.id == order.id and not cleared.alarm_active
    assert cleared.seq == 4
    # A new incident after that one cleared gets its own order, pointing at the old one.
    again = await second.handle(event(fake_clock))
    assert again is not None and again.id != order.id and again.related_to == order.id
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_categories_configure_ladders_windows_and_which_alarms_make_orders(
        fake_clock: FakeClock) -> None:
    config = load_config_text("""
site: {id: s1, name: x, gateway_id: gw1}
work_orders:
  create_for: [P0, P1, P2]
  categories:
    water_leak:
      on_site_within: 10m
      ladder:
        - {role: control_room, name: {zh: 中控室, en: Control room}, within: 2m}
        - {role: plumber, name: {zh: 水工, en: Plumber}, within: 10m}
    door_held: {work_order: false}
    gas_smell: {priority: P0, title: {zh: 燃气异味, en: Gas smell}}
""")
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    desk = WorkOrderDesk(SITE, fake_clock, sink, policies=config.work_orders)
    task = asyncio.create_task(desk.run())
    leak = await desk.handle(event(fake_clock, priority="P1", category="water_leak"))
    assert leak is not None and leak.title.zh == "漏水：1号梯"
    raised = dt.datetime.fromisoformat(leak.raised_at)
    assert dt.datetime.fromisoformat(leak.respond_by) - raised == dt.timedelta(minutes=10)
    assert await desk.handle(event(fake_clock, priority="P3", category="x")) is None
    assert await desk.handle(event(fake_clock, category="door_held")) is None
    await settle(fake_clock)
    await walk(fake_clock, 2 * MIN)
    assert sent[-1].escalation is not None and sent[-1].escalation.role == "plumber"
    gas = WorkOrderDesk(SITE, fake_clock, sink, policies=config.work_orders)
    order = await gas.handle(event(fake_clock, priority="P2", category="gas_smell"))
    assert order is not None and order.priority == "P0" and order.title.en == "Gas smell: 1号梯"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
