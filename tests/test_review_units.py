"""The review's pure parts: window verdicts in every state, the month's bounds in the site's
time zone, the summary's counts and percentiles, and which journal events make an incident."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms import AlarmEvent, AlarmState
from gateway.clock import FakeClock
from gateway.config import Location, load_config_text
from gateway.review import (
    build_review,
    duration,
    month_range,
    monthly_summary,
    review_html,
    summary_html,
)
from gateway.review._build import incident_events, window_verdicts
from gateway.workorders import WorkOrder, WorkOrderDesk, grade_report

ZONE = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=ZONE).timestamp()
CONFIG = load_config_text("site: {id: s, name: 小区, gateway_id: g}\ndevices: []\n")


def iso(offset: float) -> str:
    return dt.datetime.fromtimestamp(T0 + offset, tz=dt.UTC).isoformat(timespec="milliseconds")


def order(n: int = 1, *, priority: str = "P0", building: str | None = "1", category: str =
          "elevator_entrapment", raised: float = 0.0, **fields: Any) -> WorkOrder:
    body: dict[str, Any] = {
        "id": f"o{n}", "seq": 1, "site_id": "s", "gateway_id": "g", "alarm_id": f"a{n}",
        "rule_id": "r", "category": category, "priority": priority, "status": "open",
        "title": {"zh": "标题", "en": "title"}, "description": {"zh": "d", "en": "d"},
        "location": {"site": "s", "building": building, "device": "E1", "device_name": "E1"},
        "evidence": {}, "detected_at": iso(raised), "raised_at": iso(raised),
        "acknowledge_by": iso(raised + 60), "respond_by": iso(raised + 300),
        "resolve_by": iso(raised + 1800), "updated_at": iso(raised)}
    body.update({k: iso(raised + v) if k.endswith("_at") else v for k, v in fields.items()})
    return WorkOrder.model_validate(body)


def verdicts(o: WorkOrder, now: float) -> dict[str, tuple[str, float | None]]:
    return {v.window: (v.verdict, v.margin_s) for v in window_verdicts(o, zone=ZONE,
                                                                     now=T0 + now)}


def test_window_verdicts_follow_the_desks_rules() -> None:
    fresh = order()
    assert verdicts(fresh, 30) == {"acknowledge": ("pending", 30.0),
                                   "on_site": ("pending", 270.0),
                                   "resolve": ("pending", 1770.0)}
    assert verdicts(fresh, 400) == {"acknowledge": ("overdue", 340.0),
                                    "on_site": ("overdue", 100.0),
                                    "resolve": ("pending", 1400.0)}
    # Resolved straight away: the answer ends every window (as the desk counts it).
    quick = order(status="resolved", resolved_at=50)
    assert verdicts(quick, 4000) == {"acknowledge": ("met", 10.0), "on_site": ("met", 250.0),
                                     "resolve": ("met", 1750.0)}
    # A breach the desk recorded is taken as recorded (its monotonic measure).
    late = order(status="acknowledged", acknowledged_at=90,
                 breaches=[{"window": "acknowledge", "due": iso(60), "at": iso(90),
                            "late_by_s": 29.5}])
    assert verdicts(late, 100)["acknowledge"] == ("breached", 29.5)
    rejected = order(status="rejected", rejected_at=20)
    assert set(verdicts(rejected, 5000).values()) == {("none", None)}
    no_resolve = order(resolve_by=None)
    assert verdicts(no_resolve, 10)["resolve"] == ("none", None)


def test_a_month_is_counted_in_the_sites_time_zone() -> None:
    start, end = month_range("2026-03", "Asia/Shanghai")
    assert start == dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.UTC).timestamp()
    assert end - start == 31 * 86400
    assert month_range("2026-12", "UTC")[1] == dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    for bad in ("2026-13", "2026-3", "March", "1999-01"):
        with pytest.raises(ValueError, match="expected a month such as 2026-12"):
            month_range(bad, "UTC")


def test_the_summary_counts_rates_and_percentiles() -> None:
    took = [30, 40, 50, 60, 70, 80, 90, 100, 110, 200]  # to acknowledge, seconds
    orders = [order(i, status="acknowledged", acknowledged_at=t) for i, t in enumerate(took)]
    orders += [order(20, priority="P2", building=None, category="water_leak"),
               order(21, raised=-86400 * 2)]  # raised in February: not counted
    summary = monthly_summary("2026-03", orders, config=CONFIG, now=T0 + 100)
    assert (summary.orders, summary.incidents) == (11, 10)
    assert [(c.key, c.orders, c.incidents) for c in summary.by_building] == [
        ("1", 10, 10), ("", 1, 0)]
    assert summary.by_building[1].name.zh == "（未注明）"
    assert [(c.key, c.orders) for c in summary.by_category] == [
        ("elevator_entrapment", 10), ("water_leak", 1)]
    ack = summary.windows[0]
    # 30..60 met (4), 70..200 late (6); the P2's acknowledge window (60 s) has passed too.
    assert (ack.met, ack.breached, ack.overdue, ack.pending) == (4, 6, 1, 0)
    assert ack.compliance == round(4 / 11, 4)
    times = summary.times[0]
    assert (times.count, times.mean_s, times.p90_s) == (10, 83.0, 110.0)
    assert summary.times[1].mean_s is None and summary.windows[1].pending == 11
    assert summary.reports.reports == 0 and summary.follow_ups.calls == 0


def test_the_summary_counts_reports_by_channel_and_follow_ups_by_outcome() -> None:
    def call(reached: bool, satisfied: bool | None, at: float) -> dict[str, Any]:
        return {"at": iso(at), "by": "wang", "reached": reached, "satisfied": satisfied}

    def report(channel: str) -> dict[str, Any]:
        return {"report": {"channel": channel, "operator": "wang"}, "source": "report"}

    orders = [
        order(1, priority="P1", category="water_leak", **report("phone"), status="resolved",
              resolved_at=10, follow_up_by=iso(20), follow_up_overdue_at=30,
              follow_ups=[call(False, None, 25), call(True, True, 40)]),
        order(2, priority="P3", category="noise", building="2", **report("patrol"),
              status="open", reopened_count=1, follow_ups=[call(True, False, 50)]),
        order(3, priority="P1", category="water_leak", building="2", **report("phone"),
              status="resolved", resolved_at=10, follow_up_by=iso(-100),
              follow_up_overdue_at=50),
        order(4, status="resolved", resolved_at=10, follow_up_by=iso(10_000),
              follow_up_overdue_at=20_000),
    ]
    summary = monthly_summary("2026-03", orders, config=CONFIG, now=T0 + 100)
    reports = summary.reports
    assert reports.reports == 3
    assert [(c.key, c.orders, c.name.zh) for c in reports.by_channel] == [
        ("phone", 2, "电话"), ("patrol", 1, "巡逻发现")]
    assert [(c.key, c.orders) for c in reports.by_building] == [("2", 2), ("1", 1)]
    assert [(c.key, c.orders, c.name.zh) for c in reports.by_category] == [
        ("water_leak", 2, "漏水"), ("noise", 1, "噪音")]
    fu = summary.follow_ups
    assert (fu.calls, fu.orders_followed_up, fu.reached, fu.satisfied, fu.unsatisfied,
            fu.not_reached) == (3, 2, 2, 1, 1, 1)
    assert (fu.waiting, fu.overdue, fu.satisfaction) == (2, 1, 0.5), \
        "3 is past its overdue time, 4 not yet; 1 is closed"
    page = summary_html(summary, "zh-CN")
    assert "按来源" in page and "满意率" in page and "50%" in page


async def test_the_timeline_shows_dispatch_console_status_follow_ups_and_the_reopening(
        fake_clock: FakeClock) -> None:
    sent: list[WorkOrder] = []

    async def sink(o: WorkOrder) -> None:
        sent.append(o)

    desk = WorkOrderDesk(CONFIG.site, fake_clock, sink, policies=CONFIG.work_orders)
    raised = await desk.open_report(grade_report(
        CONFIG, category="water_leak", description="漏水", channel="phone", logged_by="wang",
        building="1"))
    steps = [
        desk.assign(raised.id, by="wang", role="engineering", person="张工", note="带工具"),
        desk.record_status(raised.id, "on_site", by="wang", note="已到场"),
        desk.record_status(raised.id, "resolved", by="wang"),
        desk.record_follow_up(raised.id, by="li", reached=False, comment="无人接听"),
        desk.record_follow_up(raised.id, by="li", reached=True, satisfied=False,
                              comment="仍漏水"),
    ]
    for step in steps:
        await fake_clock.advance(60)
        await step
    review = build_review(sent, [], config=CONFIG, now=fake_clock.time())
    rows = [(e.kind, e.what.zh, e.actor, e.detail) for e in review.timeline
            if e.kind not in ("detected", "work_order")]
    assert rows == [
        ("assigned", "派单：工程组 / 张工", "wang", "带工具"),
        ("on_site", "人员到场（中控室记录）", "wang", "已到场"),
        ("resolved", "处理完毕（中控室记录）", "wang", None),
        ("follow_up", "回访：未联系上（第 1 次）", "li", "无人接听"),
        ("reopened", "回访不满意，工单重新打开（第 1 次），时限与升级重新计时", "li", "仍漏水")]
    en = review_html(review, "en")
    assert "Dispatched to Engineering / 张工" in en and "Follow-up: not reached (attempt 1)" in en
    # The reopened order's windows count from the reopening.
    assert {v.verdict for v in review.windows} == {"pending"}


def test_an_incidents_journal_events_are_its_own() -> None:
    def event(ts: float, incident: str) -> AlarmEvent:
        return AlarmEvent(alarm_id="a", rule_id="r", device="E1", device_name="E1",
                          category="c", priority="P0", state=AlarmState.ACTIVE,
                          message_zh="", message_en="", location=Location(), ts=ts,
                          condition_since=ts, mono=ts, incident_id=incident)
    events = [event(1, "old"), event(10, "new"), event(12, "new"), event(50, "next")]
    assert [e.ts for e in incident_events(events, after=10)] == [10, 12]
    assert incident_events(events, after=99) == []


def test_durations_read_naturally() -> None:
    assert [duration(s, "zh-CN") for s in (5, 65, 3725)] == ["5秒", "1分05秒", "1小时02分"]
    assert [duration(s, "en") for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]


def test_the_page_escapes_what_people_typed_and_stays_self_contained() -> None:
    from tests.test_incident_review import check_page

    raised = order(status="acknowledged", event="acknowledged", seq=2, acknowledged_at=30,
                   status_by="<b>张工</b>", status_note='<script>alert("x")</script>',
                   evidence={"door": "<img src=http://evil/>", "speed": 0.0})
    first = order(evidence={"door": "<img src=http://evil/>", "speed": 0.0})
    review = build_review([first, raised], [], config=CONFIG, now=T0 + 100)
    for lang, words in (("zh-CN", ["事后复盘", "平台确认接单", "达标（提前 30秒）"]),
                        ("en", ["Incident review", "Acknowledged by the platform",
                                "met (30 s to spare)"])):
        page = review_html(review, lang)
        assert "<script>" not in page and "<img" not in page and "<b>张工" not in page
        assert "&lt;script&gt;" in page
        check_page(page.replace("http://evil/", "evil"), must_contain=words)
    with pytest.raises(ValueError, match="unsupported language"):
        review_html(review, "fr")
