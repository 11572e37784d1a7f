"""Incident reviews (事后复盘) through the real gateway: an entrapment on the injectable clock,
escalated once, acknowledged late, on site and resolved in time, read back as the review's
timeline and window verdicts (JSON and the printable page), and the month's summary."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from playwright.async_api import expect

from gateway.alarms import AlarmJournal, journal_path
from gateway.cli import _parser
from gateway.clock import FakeClock, SystemClock
from gateway.config import load_config_text
from gateway.demo import DEMO_SCENARIO
from gateway.incidents_cli import run_incidents_async
from gateway.review import gather_review
from gateway.simrun import run_scenario
from gateway.workorders import WorkOrderLog, parse_instant, work_order_log_path
from simulators.scenario import load_scenario
from tests.browser import WatchedContext, screenshot
from tests.console_support import (
    PASSWORD,
    STATUS_TOKEN,
    Client,
    Running,
    add_users,
    console_config,
    running_console,
)
from tests.support import Mosquitto

DOC_IMAGES = Path(__file__).parent.parent / "docs" / "img"
ORDER_EVENTS = ["raised", "escalated", "acknowledged", "on_site", "resolved"]


@contextlib.asynccontextmanager
async def console_on(tmp_path: Path, port: int, clock: FakeClock) -> AsyncIterator[Running]:
    config = console_config(tmp_path, port)
    add_users(config)
    async with running_console(config, port, clock=clock) as run:
        yield run


async def answer(run: Running, order_id: str, status: str, **extra: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{run.base}/api/v1/work-orders/{order_id}/status",
            headers={"Authorization": f"Bearer {STATUS_TOKEN}"},
            json={"status": status, **extra}) as response:
        assert response.status == 200, await response.text()


async def settle(check: Any, clock: FakeClock) -> None:
    """Wait (real time, bounded) until ``check()`` holds, letting the fake clock's sleepers
    run."""
    async with asyncio.timeout(10):
        while not await check():
            await asyncio.sleep(0.01)
            await clock.advance(0)


async def entrapment(run: Running, clock: FakeClock, viewer: Client) -> str:
    """Trap E1's passenger and take the order through a whole incident; returns its id.

    Times from the alarm (P0 defaults): escalated at 60 s (acknowledge window 1 min), the
    operator acknowledges the alarm at 75 s, the platform acknowledges at 90 s (30 s late),
    is on site at 240 s (1 min inside the 5 min window), the car is freed at 600 s and the
    order resolved at 1200 s (10 min inside the 30 min window, after the 15 min pre-alert).
    """
    operator = await run.client()
    assert (await operator.login("wang")).status == 200
    await run.publish("dev/E1/trapped", "1")
    alarm = await run.wait_alarm(viewer, "trapped@E1", "active_unacknowledged")
    order_id: str = alarm["work_order"]["id"]
    raised = clock.time()

    async def at(offset: float) -> None:
        await clock.advance(raised + offset - clock.time())

    await at(60)
    desk = run.gateway.desk
    assert desk is not None

    async def escalated() -> bool:
        order = desk.get(order_id)
        return order is not None and order.escalation is not None and \
            order.escalation.level == 2
    await settle(escalated, clock)
    await at(75)
    status, _ = await operator.post("/api/v1/alarms/trapped@E1/acknowledge",
                                    {"comment": "已电话安抚乘客"})
    assert status == 200
    await at(90)
    await answer(run, order_id, "acknowledged", by="维保 张工", note="出发")
    await at(240)
    await answer(run, order_id, "on_site", by="维保 张工")
    await at(600)
    await run.publish("dev/E1/trapped", "0")
    await run.wait_alarm(viewer, "trapped@E1", "normal")
    await at(1200)
    await answer(run, order_id, "resolved", by="维保 张工", note="乘客已救出，电梯恢复")

    async def written() -> bool:
        status, body = await viewer.get(f"/api/v1/work-orders/{order_id}")
        return status == 200 and [v["event"] for v in body["versions"]
                                  if v["event"] in ORDER_EVENTS] == ORDER_EVENTS
    await settle(written, clock)
    return order_id


async def test_an_entrapments_review_has_its_whole_timeline_and_window_verdicts(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    async with console_on(tmp_path, mosquitto.port, fake_clock) as run:
        viewer = await run.client()
        assert (await viewer.login("li")).status == 200
        order_id = await entrapment(run, fake_clock, viewer)

        status, review = await viewer.get(f"/api/v1/incidents/{order_id}/review")
        assert status == 200, review
        assert review["priority"] == "P0" and review["category"] == "elevator_entrapment"
        assert review["timezone"] == "Asia/Shanghai" and review["status"] == "resolved"
        assert review["evidence"] == {"trapped": 1}
        verdicts = {w["window"]: (w["verdict"], w["margin_s"], w["took_s"])
                    for w in review["windows"]}
        assert verdicts == {"acknowledge": ("breached", 30.0, 90.0),
                            "on_site": ("met", 60.0, 240.0),
                            "resolve": ("met", 600.0, 1200.0)}

        timeline = review["timeline"]
        offsets = [round(e["ts"] - timeline[1]["ts"]) for e in timeline]
        steps = [(offset, e["kind"], e["what"]["en"].split(":")[0], e["actor"])
                 for offset, e in zip(offsets, timeline, strict=True)]
        assert steps == [
            (0, "detected", "Condition first detected", None),
            (0, "alarm", "Alarm raised", None),
            (0, "work_order", "Work order raised and sent upstream; level 1/4", None),
            (60, "escalation", "Not acknowledged", None),
            (60, "window", "Acknowledge window ended unmet", None),
            (75, "operator", "Alarm acknowledged by operator", "wang"),
            (90, "platform", "Acknowledged by the platform", "维保 张工"),
            (240, "on_site", "Staff on site", "维保 张工"),
            (600, "alarm", "Alarm condition returned to normal", None),
            (600, "work_order", "Alarm cleared on the work order", None),
            (900, "work_order", "Deadline pre-alert", None),
            (1200, "resolved", "Resolved", "维保 张工"),
        ], steps
        assert timeline[0]["evidence"] == {"trapped": 1}
        assert timeline[5]["detail"] == "已电话安抚乘客"
        assert timeline[-1]["detail"] == "乘客已救出，电梯恢复"
        assert all(re.fullmatch(r"2026-01-01T08:\d\d:\d\d\+08:00", e["at"]) for e in timeline)

        status, page = await viewer.get(f"/api/v1/incidents/{order_id}/review.html")
        assert status == 200
        check_page(page, must_contain=["事后复盘", "超时 30秒", "达标（提前 1分00秒）",
                                       "操作员确认告警", "wang", "trapped = 1", "维保 张工"])
        status, page_en = await viewer.get(
            f"/api/v1/incidents/{order_id}/review.html?lang=en")
        assert status == 200
        check_page(page_en, must_contain=["Incident review", "breached by 30 s",
                                          "met (10 min 00 s to spare)"])

        status, summary = await viewer.get("/api/v1/incidents/summary?month=2026-01")
        assert status == 200, summary
        assert (summary["orders"], summary["incidents"]) == (1, 1)
        assert [(c["key"], c["orders"]) for c in summary["by_building"]] == [("1号楼", 1)]
        assert [(w["window"], w["compliance"]) for w in summary["windows"]] == [
            ("acknowledge", 0.0), ("on_site", 1.0), ("resolve", 1.0)]
        assert [(t["measure"], t["mean_s"], t["p90_s"]) for t in summary["times"]] == [
            ("acknowledge", 90.0, 90.0), ("on_site", 240.0, 240.0),
            ("resolve", 1200.0, 1200.0)]
        assert summary["incident_list"][0]["breaches"] == ["acknowledge"]
        assert summary["reports"] == {"available": True, "reports": 0, "by_category": [],
                                      "by_building": [], "by_channel": []}
        assert summary["follow_ups"]["calls"] == 0 and summary["follow_ups"]["waiting"] == 1, \
            "resolved, its follow-up owed"
        assert (await viewer.get("/api/v1/incidents/summary?month=2025-12"))[1]["orders"] == 0
        status, html = await viewer.get("/api/v1/incidents/summary.html?month=2026-01")
        assert status == 200
        check_page(html, must_contain=["月度服务汇总", "1号楼", "报事报修", "回访满意度",
                                       "待回访工单"])

        assert (await viewer.get("/api/v1/incidents/nope/review"))[0] == 404
        status, spec = await viewer.get("/api/v1/openapi.json")
        assert status == 200
        assert {"/api/v1/incidents/{order_id}/review", "/api/v1/incidents/{order_id}/review.html",
                "/api/v1/incidents/summary", "/api/v1/incidents/summary.html"} <= set(spec["paths"])
        assert "IncidentReview" in str(spec["paths"]["/api/v1/incidents/{order_id}/review"])
        assert (await viewer.get("/api/v1/incidents/summary?month=2026-13"))[0] == 400
        anonymous = await run.client()
        assert (await anonymous.get(f"/api/v1/incidents/{order_id}/review"))[0] == 401

        # The command line: the same review through the API with a viewer's token.
        with run.users as store:
            token = store.issue_token("li", "cli")
        page_file = tmp_path / "review.html"
        status, out = await incidents("review", order_id, "--html", str(page_file),
                                      token=token, url=run.base)
        assert (status, out) == (0, "")
        check_page(page_file.read_text(encoding="utf-8"),
                   must_contain=["事后复盘", "超时 30秒", "wang"])
        status, out = await incidents("review", order_id, "--lang", "en", token=token,
                                      url=run.base)
        assert status == 0
        assert "Acknowledge window: breached 30 s  (1 min 30 s)" in out
        assert re.search(r"08:\d\d:\d\d  Alarm acknowledged by operator  \[wang\]  — 已电话安抚乘客",
                         out), out
        status, out = await incidents("summary", "--month", "2026-01", "--json", token=token,
                                      url=run.base)
        assert status == 0 and '"orders": 1' in out
        assert (await incidents("review", "nope", token=token, url=run.base))[0] == 1


async def incidents(*argv: str, token: str, url: str) -> tuple[int, str]:
    """``propgw incidents ARGV`` in this event loop; (exit status, standard output)."""
    args = _parser().parse_args(["incidents", *argv, "--token", token, "--url", url])
    out = io.StringIO()
    return await run_incidents_async(args, out), out.getvalue()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in ("meta", "br", "link", "img"):
            self.open.append(tag)
        self.urls += [v for k, v in attrs if k in ("href", "src") and v]

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_page(page: str, must_contain: list[str]) -> None:
    """Well nested, self-contained (no URL, script or link), with A4 print rules."""
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.open == [], f"unclosed: {parser.open}"
    assert parser.urls == [] and not {"script", "link", "img"} & parser.tags
    assert "url(" not in page and "@import" not in page and "http" not in page
    assert "@page { size: A4" in page and "@media print" in page
    text = " ".join(parser.text)
    missing = [m for m in must_contain if m not in text]
    assert not missing, missing


@pytest.mark.browser
@pytest.mark.slow
async def test_the_review_page_renders_in_chromium_and_prints_on_a4(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock,
        browser_context: Callable[[str], Awaitable[WatchedContext]]) -> None:
    """The page in headless chromium: the timeline and verdicts are drawn, nothing is fetched
    from elsewhere, the A4 print is two pages at most. With PROPGW_DOC_SCREENSHOTS=1
    (scripts/console-screenshots.sh) its screenshot replaces docs/img/incident-review-zh.png."""
    out = DOC_IMAGES if os.environ.get("PROPGW_DOC_SCREENSHOTS") == "1" else tmp_path
    async with console_on(tmp_path, mosquitto.port, fake_clock) as run:
        viewer = await run.client()
        assert (await viewer.login("li")).status == 200
        order_id = await entrapment(run, fake_clock, viewer)

        watched = await browser_context(run.base)
        page = await watched.context.new_page()
        login = await page.request.post(f"{run.base}/api/v1/session",
                                        data={"name": "li", "password": PASSWORD})
        assert login.status == 200
        # The console's order page links to the review, in the page's language.
        await page.goto(f"{run.base}/#/orders/{order_id}")
        link = page.locator("a.review-link")
        await expect(link).to_have_attribute(
            "href", f"/api/v1/incidents/{order_id}/review.html?lang=zh-CN")
        async with page.expect_popup() as opened:
            await link.click()
        popup = await opened.value
        await expect(popup.locator("h1")).to_contain_text("事后复盘：电梯困人：1号梯")
        await popup.close()

        await page.set_viewport_size({"width": 900, "height": 1200})
        await page.goto(f"{run.base}/api/v1/incidents/{order_id}/review.html")
        await expect(page.locator("h1")).to_contain_text("事后复盘")
        await expect(page.locator("table.timeline tbody tr")).to_have_count(12)
        await expect(page.locator("table.windows .v-breached")).to_have_text("超时 30秒")
        await expect(page.locator("table.windows .v-met")).to_have_count(2)
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        await screenshot(page, out / "incident-review-zh.png")

        pdf = await page.pdf(format="A4", print_background=True)
        pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
        assert 1 <= pages <= 2, f"the review prints on {pages} A4 pages"
        # The printable width of A4 with the page's margins: 210 - 2 x 12 mm = 186 mm, 703 px.
        await page.emulate_media(media="print")
        await page.set_viewport_size({"width": 703, "height": 1000})
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"), "fits A4's width"
        watched.assert_clean()
        assert all(url.startswith(run.base) for url in watched.requests)


@pytest.mark.slow
async def test_the_demos_entrapment_reviewed_from_the_files_it_left(tmp_path: Path) -> None:
    """The demo's site played at 25x through the real gateway with a state folder; afterwards
    the review is built from its alarm journal and work-order history files: detection 30 s
    before the alarm (the rule's on-delay), the readings that raised it, the car recovered
    and the order's alarm cleared, the acknowledge window overdue (nobody answered)."""
    scenario = load_scenario(DEMO_SCENARIO)
    result = await run_scenario(scenario, speed=25,
                                gateway_overrides={"state_dir": str(tmp_path)})
    assert result.passed, result.failures
    # The demo's site (its id names the files), without its devices.
    config = load_config_text(yaml.safe_dump({"site": scenario.gateway["site"],
                                              "state_dir": str(tmp_path), "devices": []}))
    journal_file, worklog_file = journal_path(config), work_order_log_path(config)
    assert journal_file is not None and journal_file.is_file()
    journal = AlarmJournal(journal_file)
    await journal.open(time.time())
    try:
        async with WorkOrderLog(worklog_file, clock=SystemClock()) as worklog:
            order, = [o for o in await worklog.recent(50)
                      if o.rule_id == "elevator.trapped-between-floors"]
            raised = parse_instant(order.raised_at)
            review = await gather_review(order.id, worklog=worklog, journal=journal,
                                         config=config, now=raised + 120)
    finally:
        await journal.close()
    assert review is not None and review.priority == "P0"
    steps = [(e.kind, e.what.en.split(";")[0], e.alarm_id) for e in review.timeline]
    assert steps == [
        ("detected", "Condition first detected", "elevator.trapped-between-floors@E1"),
        ("alarm", "Alarm raised", "elevator.trapped-between-floors@E1"),
        ("work_order", "Work order raised and sent upstream", None),
        ("alarm", "Alarm condition returned to normal", "elevator.trapped-between-floors@E1"),
        ("work_order", "Alarm cleared on the work order", None),
        ("window", "Acknowledge window ended unmet", None),
    ], steps
    detected, alarm = review.timeline[0], review.timeline[1]
    assert 29.0 <= alarm.ts - detected.ts <= 32.0, "the rule's 30 s on-delay"
    assert review.evidence and alarm.evidence == review.evidence
    assert review.timeline[3].ts - alarm.ts < 60, "the technician freed the car within a minute"
    verdicts = {w.window: (w.verdict, w.margin_s) for w in review.windows}
    assert verdicts == {"acknowledge": ("overdue", 60.0), "on_site": ("pending", 180.0),
                        "resolve": ("pending", 1680.0)}
