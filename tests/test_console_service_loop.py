"""The console's side of the service loop (报事报修闭环) in a real headless Chromium against a real
gateway on the fake clock, with an MQTT upstream on a real mosquitto: a phone report logged in
the console's form is graded (its priority shown before sending), escalates once, is recorded
on site and resolved with the work-order page's buttons, appears in the follow-ups list when its
48 h are up (not before), is recorded unsatisfied in the follow-up dialog and reopens; a viewer
sees no dispatch button and no reports page; the monthly summary is shown for a chosen month
with its printable page.

The browser's own clock is not the gateway's here: only what the gateway says (its lists, its
orders) is asserted, never a countdown.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route, expect

from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from tests.browser import WatchedContext, http_statuses
from tests.console_support import (
    PASSWORD,
    STATUS_TOKEN,
    Client,
    Running,
    add_users,
    running_console,
)
from tests.gateway_support import advance_delivered
from tests.support import Mosquitto

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto, pytest.mark.slow]

OpenContext = Callable[[str], Awaitable[WatchedContext]]
DOC_IMAGES = Path(__file__).parent.parent / "docs" / "img"
PHONE = "13812345678"

# Sessions run on the gateway's clock: a month-long one outlives the 48 h the fake clock jumps.
# A jump of the fake clock leaves a message published within it waiting for longer (in fake
# time) than the health allows, until the real PUBACK comes: the gateway must not exit for it.
SITE = """
site: {{id: cs, name: 阳光花园, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream:
  broker: devices
  status_api: {{token: {token}}}
console: {{port: 0, session_ttl: 30d}}
health: {{exit_on_failing: false}}
devices:
  - {{id: E1, name: 1号梯, driver: mqtt, kind: elevator,
     location: {{building: "1号楼", floor: "3", zone: 东区}},
     points: [{{name: trapped, topic: dev/E1/trapped, type: int}}]}}
  - {{id: W1, name: 水泵房, driver: mqtt, kind: water_sensor, location: {{building: "2号楼"}},
     points: [{{name: wet, topic: dev/W1/wet, type: int}}]}}
rules:
  - {{id: trapped, devices: [E1], when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 电梯困人, en: passenger trapped}}}}
"""


#: Follow-ups due 2 h after the repair, overdue an hour later: the fake clock need not run
#: through three days (the alarm engine's one-second tick makes that ~15 s of real time).
QUICK_FOLLOW_UP = """
work_orders:
  priorities:
    P1: {follow_up_after: 2h, follow_up_within: 1h}
"""


def site_config(tmp_path: Path, port: int, extra: str = "") -> GatewayConfig:
    return load_config_text(SITE.format(state=tmp_path / "state", port=port,
                                        token=STATUS_TOKEN) + extra)


@dataclass
class Loop:
    """The running gateway, its fake clock, and an operator's API client."""

    run: Running
    clock: FakeClock
    api: Client

    @property
    def base(self) -> str:
        return self.run.base

    async def advance(self, seconds: float, step: float = 10.0) -> None:
        """Fake time forward a step at a time, each once the outbox has delivered (a jump
        while a publish waits for its PUBACK would time the publish out)."""
        await advance_delivered(self.run.gateway, self.clock, seconds, step)

    async def reports(self) -> list[dict[str, Any]]:
        status, body = await self.api.get("/api/v1/reports?scope=recent")
        assert status == 200, body
        return list(body["orders"])


@asynccontextmanager
async def serving(config: GatewayConfig, port: int, clock: FakeClock) -> AsyncIterator[Loop]:
    add_users(config)
    async with running_console(config, port, clock=clock) as run:
        async with asyncio.timeout(10):
            while not (run.gateway.upstream is not None and run.gateway.upstream.connected):
                await asyncio.sleep(0.01)
        api = await run.client()
        assert (await api.login("wang")).status == 200
        yield Loop(run, clock, api)


@pytest.fixture
async def loop(mosquitto: Mosquitto, tmp_path: Path,
               fake_clock: FakeClock) -> AsyncIterator[Loop]:
    """The site with the default windows (follow-up 48 h after the repair)."""
    async with serving(site_config(tmp_path, mosquitto.port), mosquitto.port,
                       fake_clock) as running:
        yield running


@pytest.fixture
async def quick_loop(mosquitto: Mosquitto, tmp_path: Path,
                     fake_clock: FakeClock) -> AsyncIterator[Loop]:
    """The site with P1 follow-ups due after 2 h, overdue after 3 h."""
    async with serving(site_config(tmp_path, mosquitto.port, QUICK_FOLLOW_UP),
                       mosquitto.port, fake_clock) as running:
        yield running


async def login(page: Page, name: str, password: str = PASSWORD) -> None:
    await page.fill("#f-name", name)
    await page.fill("#f-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\blive-live\b"))


async def fill_report(page: Page, **values: str) -> None:
    """The report form's fields by name (selects chosen, inputs typed)."""
    form = page.locator("#report-form")
    for name, value in values.items():
        target = form.locator(f"[name={name}]")
        if await target.evaluate("e => e.tagName") == "SELECT":
            await target.select_option(value)
        else:
            await target.fill(value)


# --------------------------------------------------------------------------- reports


async def test_a_phone_report_is_graded_in_the_form_and_a_double_click_is_one_order(
        loop: Loop, browser_context: OpenContext) -> None:
    watched = await browser_context(loop.base)
    page = await watched.new_page()
    await login(page, "wang")
    await page.click("#nav-reports")
    graded = page.locator("#report-graded")
    await expect(graded).to_contain_text("选择类别后显示其级别")
    await fill_report(page, category="water_leak")
    await expect(graded.locator(".prio-badge")).to_have_count(1)
    await expect(graded).to_have_attribute("data-priority", "P1")
    await expect(graded).to_contain_text("按类别定级：")
    await expect(page.locator("#f-priority option").first).to_have_text("按类别定级（P1 高）")
    await expect(page.locator("#f-priority_reason")).to_be_hidden()

    # Nothing is sent without a description.
    await page.click("#report-submit")
    assert await loop.reports() == []

    await fill_report(page, channel="phone", building="3号楼", floor="12", room="1201",
                      description="楼上漏水，天花板滴水", reporter="张女士", contact=PHONE)
    await page.dblclick("#report-submit")
    row = page.locator("#reports-list tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("漏水：3号楼 12层 1201室")
    await expect(row).to_contain_text("张女士")
    await expect(row).to_contain_text(PHONE)  # operators call the reporter back
    await expect(row).to_contain_text("电话")
    await expect(row).to_contain_text("wang 登记")
    await expect(row.locator(".prio-badge")).to_contain_text("P1")
    await expect(page.locator("#toasts")).to_contain_text("已登记并派单（P1）")
    orders = await loop.reports()
    assert len(orders) == 1, "a double click logs one report"
    assert (orders[0]["priority"], orders[0]["report"]["contact"]) == ("P1", PHONE)
    # The form is empty again for the next call, and a new report is a new order.
    await expect(page.locator("#f-description")).to_have_value("")
    await expect(graded).to_have_attribute("data-priority", "")

    # A priority changed by the operator needs a reason; it is recorded on the order.
    await fill_report(page, category="noise", description="凌晨施工", channel="patrol",
                      device="E1", priority="P1")
    await expect(graded).to_have_attribute("data-priority", "P1")
    await expect(page.locator("#f-priority_reason")).to_be_visible()
    await page.click("#report-submit")
    assert len(await loop.reports()) == 1, "no reason, not sent"
    await fill_report(page, priority_reason="多户投诉")
    await page.click("#report-submit")
    await expect(row).to_have_count(2)
    changed = page.locator("#reports-list tbody tr", has_text="多户投诉")
    await expect(changed).to_contain_text("级别由 wang 调整（原为 P3）：多户投诉")
    await expect(changed).to_contain_text("1号楼 3层")  # the device's location
    await expect(changed).to_contain_text("巡逻发现")

    # Its title opens the work order's page.
    await row.filter(has_text="漏水").locator("a.order-link").click()
    await expect(page.locator("h1.order-title")).to_contain_text("漏水：3号楼 12层 1201室")
    assert page.url.endswith(f"#/orders/{orders[0]['id']}")


async def test_a_report_whose_answer_was_lost_is_one_order_when_sent_again(
        loop: Loop, browser_context: OpenContext) -> None:
    """The gateway logs the report but its answer never reaches the browser: the operator
    sends it again, with the same Idempotency-Key, and gets the same order."""
    watched = await browser_context(loop.base)
    keys: list[str | None] = []

    async def lose_the_first_answer(route: Route) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        keys.append(await route.request.header_value("idempotency-key"))
        if len(keys) == 1:
            await route.fetch()  # the gateway gets it and answers; the browser never hears
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await watched.context.route("**/api/v1/reports", lose_the_first_answer)
    page = await watched.new_page()
    await login(page, "wang")
    await page.click("#nav-reports")
    await fill_report(page, category="power_loss", building="2号楼", description="整层停电")
    await page.click("#report-submit")
    await expect(page.locator("#report-error")).to_have_text("无法连接网关，请检查网络。")
    watched.take_errors()  # the reset connection
    assert len(await loop.reports()) == 1, "the gateway logged it"
    await page.click("#report-submit")
    await expect(page.locator("#toasts")).to_contain_text("已登记并派单（P1）")
    assert len(await loop.reports()) == 1, "sent again, still one order"
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    # The next report is another intention: another key.
    await fill_report(page, category="noise", description="楼道噪音")
    await page.click("#report-submit")
    await expect(page.locator("#reports-list tbody tr")).to_have_count(2)
    assert len(keys) == 3 and keys[2] != keys[0]


async def test_a_refused_report_says_why_and_keeps_the_form(
        loop: Loop, browser_context: OpenContext) -> None:
    watched = await browser_context(loop.base)
    page = await watched.new_page()
    await login(page, "wang")
    await page.click("#nav-reports")
    await fill_report(page, category="water_leak", description="漏水")
    # The device list was read when the page opened; this one is gone by now.
    await page.locator("#f-device").evaluate(
        "s => { s.add(new Option('X9', 'X9')); s.value = 'X9'; }")
    await page.click("#report-submit")
    await expect(page.locator("#report-error")).to_contain_text("未能登记")
    await expect(page.locator("#report-error")).to_contain_text("X9")
    assert 400 in http_statuses(watched.take_errors())
    await expect(page.locator("#f-description")).to_have_value("漏水")
    assert await loop.reports() == []


async def test_a_viewer_has_no_reports_page(loop: Loop, browser_context: OpenContext) -> None:
    page = await (await browser_context(loop.base)).new_page()
    await login(page, "li")
    await expect(page.locator("#nav-orders")).to_be_visible()
    await expect(page.locator("#nav-reports")).to_have_count(0)
    await page.goto(f"{loop.base}/#/reports")
    await expect(page.locator("#board-list")).to_be_attached()
    await expect(page.locator("#report-form")).to_have_count(0)


# --------------------------------------------------------------------------- the month


async def test_the_monthly_summary_shows_the_chosen_month_and_links_its_printable_page(
        loop: Loop, browser_context: OpenContext) -> None:
    await loop.run.publish("dev/E1/trapped", "1")
    async with asyncio.timeout(10):
        while not loop.run.gateway.desk.open_orders:
            await asyncio.sleep(0.02)
    watched = await browser_context(loop.base)
    page = await watched.new_page()
    await login(page, "li")
    await page.click("#nav-kpi")
    await page.click("#kpi-tab-month")
    await expect(page.locator("#kpi-tab-month")).to_have_attribute("aria-current", "page")
    # The gateway's month (its fake clock starts on 2026-01-01), not the browser's.
    await expect(page.locator("#summary-month")).to_have_value("2026-01")
    await expect(page.locator("#sum-orders .stat-value")).to_have_text("1")
    await expect(page.locator("#sum-incidents .stat-value")).to_have_text("1")
    incident = page.locator("table.sum-incidents tbody tr")
    await expect(incident).to_contain_text("电梯困人")
    await expect(page.locator("#sum-by-category")).to_contain_text("电梯困人")
    await expect(page.locator("table.sum-windows tbody tr")).to_have_count(3)
    printable = page.locator("#summary-print")
    await expect(printable).to_have_attribute(
        "href", "/api/v1/incidents/summary.html?lang=zh-CN&month=2026-01")
    printed = await watched.context.request.get(
        loop.base + (await printable.get_attribute("href") or ""))
    assert printed.status == 200 and "2026-01" in await printed.text()

    # Another month: nothing in it.
    await page.fill("#summary-month", "2025-12")
    await page.click("#summary-show")
    await expect(page.locator("#sum-orders .stat-value")).to_have_text("0")
    await expect(page.locator("#sum-no-incidents")).to_be_visible()
    await expect(printable).to_have_attribute(
        "href", "/api/v1/incidents/summary.html?lang=zh-CN&month=2025-12")
    await page.click("#lang-switch")
    await expect(page.locator("#kpi-tab-month")).to_have_text("Monthly summary")
    await expect(page.locator("#summary-month")).to_have_value("2025-12")
    await expect(page.locator("#summary-print")).to_have_attribute(
        "href", "/api/v1/incidents/summary.html?lang=en&month=2025-12")


# --------------------------------------------------------------------------- the whole loop


async def confirm_dialog(page: Page, **radios: str) -> None:
    """Answers the open dialog's radio questions and presses its confirm button."""
    dialog = page.locator("#dialog")
    for name, value in radios.items():
        await dialog.locator(f"input[name={name}][value={value}]").check()
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(dialog).to_be_hidden()


async def test_a_phone_report_goes_round_the_loop_in_the_console(
        loop: Loop, browser_context: OpenContext) -> None:
    """Done when (issue 12): a phone report → graded → escalated once → on site → resolved →
    follow-up due after 48 h (not at 47) → recorded unsatisfied → reopened; a viewer sees no
    dispatch button."""
    page = await (await browser_context(loop.base)).new_page()
    await login(page, "wang")
    await page.click("#nav-reports")
    await fill_report(page, category="water_leak", channel="phone", building="3号楼",
                      floor="12", room="1201", description="楼上漏水，天花板滴水",
                      reporter="张女士", contact=PHONE)
    await expect(page.locator("#report-graded")).to_have_attribute("data-priority", "P1")
    await page.click("#report-submit")
    await expect(page.locator("#reports-list tbody tr")).to_have_count(1)
    [order] = await loop.reports()
    row = page.locator(f'#reports-list tr[data-order-id="{order["id"]}"]')
    await expect(row.locator(".prio-badge")).to_contain_text("P1")
    await row.locator("a.order-link").click()
    detail = page.locator("#order-detail")
    await expect(detail.locator(".wo-level").first).to_have_text("第 1/4 级")
    await expect(page.locator("#assigned-to")).to_have_text("未指派")
    await expect(detail).to_contain_text(PHONE)  # the operator who calls back sees it whole

    # Nobody acknowledges within the ladder's first step (control room, 5 min): the patrol.
    first_step = loop.run.gateway.config.work_orders.priorities["P1"].ladder[0].within
    await loop.advance(first_step + 1)
    await expect(detail.locator(".wo-level").first).to_have_text("第 2/4 级")
    await expect(detail).to_contain_text("巡逻岗")

    buttons = page.locator("#dispatch [data-dispatch]")
    await expect(buttons).to_have_text(["指派", "接单", "到场", "解决"])
    await page.click('[data-dispatch="assign"]')
    await page.select_option("#dialog select[name=role]", "patrol")
    await page.fill("#dialog input[name=person]", "张师傅")
    await confirm_dialog(page)
    await expect(page.locator("#assigned-to")).to_have_text("巡逻岗 · 张师傅")

    await page.click('[data-dispatch="on-site"]')
    await page.fill("#dialog textarea[name=note]", "已到 1201 室")
    await confirm_dialog(page)
    await expect(detail.locator(".wo-state").first).to_have_text("已到场")
    await expect(page.locator('[data-dispatch="acknowledge"]')).to_be_disabled()
    await expect(page.locator('[data-dispatch="on-site"]')).to_be_disabled()
    await expect(page.locator("#platform-answer .status-via")).to_have_text("控制台记录")
    await expect(page.locator("#platform-answer")).to_contain_text("已到 1201 室")

    await page.click('[data-dispatch="resolve"]')
    await confirm_dialog(page)
    await expect(detail.locator(".wo-state").first).to_have_text("已解决")
    await expect(page.locator('[data-dispatch="resolve"]')).to_be_disabled()
    await expect(page.locator('[data-dispatch="assign"]')).to_be_disabled()
    await expect(page.locator('[data-dispatch="follow-up"]')).to_be_enabled()
    status, now = await loop.api.get(f"/api/v1/work-orders/{order['id']}")
    assert status == 200 and (now["status_via"], now["status_by"]) == ("console", "wang")
    events = [v["event"] for v in now["versions"]]
    assert events == ["raised", "escalated", "assigned", "on_site", "resolved"], events

    # The follow-up is due 48 h after the resolution: listed as coming up, not due, at 47 h.
    await page.click("#nav-followups")
    upcoming = page.locator(f'#followups-upcoming tr[data-order-id="{order["id"]}"]')
    await expect(upcoming).to_contain_text("张女士")
    await expect(page.locator("#followups-none")).to_be_visible()
    await loop.advance(47 * 3600, step=3600)
    await page.click("#followups-refresh")
    await expect(page.locator("#followups-stamp")).to_contain_text("2026-01-03")
    await expect(page.locator("#followups-none")).to_be_visible()
    await expect(upcoming).to_be_visible()
    await expect(page.locator("#followups-badge")).to_have_count(0)
    await loop.advance(3600, step=600)
    due = page.locator(f'#followups-due tr[data-order-id="{order["id"]}"]')
    await expect(due).to_contain_text(PHONE)  # the number to call
    await expect(due).to_have_attribute("data-overdue", "false")
    await expect(upcoming).to_have_count(0)
    await expect(page.locator("#followups-badge")).to_have_text("1")

    await due.locator('[data-action="follow-up"]').click()
    await expect(page.locator("#dialog")).to_contain_text(f"请致电：张女士 · {PHONE}")
    await page.fill("#dialog textarea[name=comment]", "天花板仍在滴水")
    await confirm_dialog(page, reached="yes", satisfied="no")
    await expect(page.locator("#toasts")).to_contain_text("报修人不满意：工单已重新打开")
    await expect(page.locator("#followups-none")).to_be_visible()
    await expect(page.locator("#followups-badge")).to_have_count(0)

    # The order is open again, its history kept.
    await page.goto(f"{loop.base}/#/orders/{order['id']}")
    await expect(detail.locator(".wo-state").first).to_have_text("待接单")
    await expect(page.locator("h1.order-title .wo-reopened")).to_have_text("已重新打开 ×1")
    await expect(page.locator("#reopened")).to_contain_text("重新打开 1 次")
    calls = page.locator("table.follow-ups tbody tr")
    await expect(calls).to_have_count(1)
    await expect(calls).to_contain_text("天花板仍在滴水")
    await expect(calls.locator("td:nth-child(4)")).to_have_text("否")
    await expect(page.locator('[data-dispatch="acknowledge"]')).to_be_enabled()

    # The month counts the report and the call.
    await page.click("#nav-kpi")
    await page.click("#kpi-tab-month")
    await expect(page.locator("#sum-reports-n .stat-value")).to_have_text("1")
    await expect(page.locator("table.sum-reports-by_channel")).to_contain_text("电话")
    follow_ups = page.locator("#sum-follow-ups")
    for key, value in [("calls", "1"), ("reached", "1"), ("unsatisfied", "1"),
                       ("satisfaction", "0%")]:
        await expect(follow_ups.locator(f'dd[data-key="{key}"]')).to_have_text(value)
    await expect(page.locator("#sum-satisfaction .stat-value")).to_have_text("0%")

    # A viewer sees the order and its progress, and no button to change it.
    viewer = await (await browser_context(loop.base)).new_page()
    await login(viewer, "li")
    await viewer.goto(f"{loop.base}/#/orders/{order['id']}")
    await expect(viewer.locator("#assigned-to")).to_have_text("巡逻岗 · 张师傅")
    await expect(viewer.locator("h1.order-title .wo-reopened")).to_be_visible()
    await expect(viewer.locator("[data-dispatch]")).to_have_count(0)
    await expect(viewer.locator("#order-detail")).to_contain_text("138****5678")
    await expect(viewer.locator("#order-detail")).not_to_contain_text(PHONE)
    await expect(viewer.locator("#nav-reports")).to_have_count(0)


async def api_report(loop: Loop, description: str, **extra: str) -> dict[str, Any]:
    status, order = await loop.api.post("/api/v1/reports", {
        "category": "water_leak", "description": description, "building": "5号楼",
        "reporter": "李先生", "contact": PHONE, **extra})
    assert status == 200, order
    return dict(order)


async def api_act(loop: Loop, order: dict[str, Any], action: str,
                  body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, answer = await loop.api.post(f"/api/v1/work-orders/{order['id']}/{action}",
                                         body or {})
    assert status == 200, answer
    return dict(answer)


async def test_overdue_follow_ups_come_first_in_red_and_a_refusal_is_shown_in_words(
        quick_loop: Loop, browser_context: OpenContext) -> None:
    loop = quick_loop
    early = await api_report(loop, "早的一单")
    late = await api_report(loop, "晚的一单")
    open_one = await api_report(loop, "还没处理的一单")
    await api_act(loop, early, "resolve")
    await loop.advance(1800, step=60)
    await api_act(loop, late, "resolve")
    # 3 h 15 min after the first repair: its follow-up (due after 2 h) is overdue (1 h more);
    # the second's fell due 45 min ago.
    await loop.advance(9900, step=300)

    watched = await browser_context(loop.base)
    page = await watched.new_page()
    await login(page, "wang")
    badge = page.locator("#followups-badge")
    await expect(badge).to_have_text("2")
    await expect(badge).to_have_class(re.compile(r"\bnav-badge-overdue\b"))
    await expect(badge).to_have_attribute("title", "待回访 2，其中逾期 1")
    await page.click("#nav-followups")
    rows = page.locator("#followups-due tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("data-order-id", early["id"])
    await expect(rows.nth(0)).to_have_class(re.compile(r"\bfu-overdue\b"))
    await expect(rows.nth(0)).to_contain_text("已逾期")
    await expect(rows.nth(1)).to_have_attribute("data-order-id", late["id"])
    await expect(rows.nth(1)).to_have_attribute("data-overdue", "false")
    await expect(page.locator("#fu-overdue-count")).to_have_text("逾期 1")

    # A viewer sees the same list, the numbers masked and no button to record a call.
    viewer = await (await browser_context(loop.base)).new_page()
    await login(viewer, "li")
    await viewer.click("#nav-followups")
    await expect(viewer.locator("#followups-due tbody tr")).to_have_count(2)
    await expect(viewer.locator("#followups-due")).to_contain_text("138****5678")
    await expect(viewer.locator("#followups-due")).not_to_contain_text(PHONE)
    await expect(viewer.locator('[data-action="follow-up"]')).to_have_count(0)
    await expect(rows.nth(0)).to_contain_text(PHONE)
    await viewer.context.close()

    # The keyboard reaches it all: Enter opens the dialog on its first question, Space
    # answers it, Tab goes on to the next (open only once someone was reached), Esc cancels.
    await rows.nth(1).locator('[data-action="follow-up"]').focus()
    await page.keyboard.press("Enter")
    reached_yes = page.locator("#dialog input[name=reached][value=yes]")
    await expect(reached_yes).to_be_focused()
    satisfied_yes = page.locator("#dialog input[name=satisfied][value=yes]")
    await expect(satisfied_yes).to_be_disabled()
    await page.keyboard.press("Space")
    await expect(reached_yes).to_be_checked()
    await expect(satisfied_yes).to_be_enabled()
    await page.keyboard.press("Tab")
    await expect(satisfied_yes).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#dialog")).to_be_hidden()
    status, listed = await loop.api.get("/api/v1/follow-ups")
    assert status == 200 and [i["attempts"] for i in listed["due"]] == [0, 0], "nothing sent"

    # Nobody answered: it stays due, the attempt counted; the dialog asks nothing more.
    await rows.nth(1).locator('[data-action="follow-up"]').click()
    await page.check("#dialog input[name=reached][value=no]")
    await expect(page.locator("#f-satisfied")).to_be_hidden()
    await page.click('#dialog [data-dialog-button="confirm"]')
    await expect(page.locator("#toasts")).to_contain_text("未联系上：已记录第 1 次回访")
    await expect(rows.nth(1).locator("td:nth-child(7)")).to_have_text("1")
    # Reached but not said whether satisfied: the dialog asks, nothing is sent.
    await rows.nth(0).locator('[data-action="follow-up"]').click()
    await page.check("#dialog input[name=reached][value=yes]")
    await page.click('#dialog [data-dialog-button="confirm"]')
    await expect(page.locator("#dialog .dialog-error")).to_have_text("联系上时请选择是否满意。")
    await confirm_dialog(page, satisfied="yes")
    await expect(page.locator("#toasts")).to_contain_text("回访已记录，工单关闭")
    await expect(rows).to_have_count(1)
    await expect(badge).to_have_class(re.compile(r"^nav-badge$"))

    # The platform answers while the operator's dialog is open: the gateway refuses, the
    # dialog says why in words.
    await page.goto(f"{loop.base}/#/orders/{open_one['id']}")
    await page.click('[data-dispatch="on-site"]')
    await api_act(loop, open_one, "resolve")  # another operator was quicker
    await page.click('#dialog [data-dialog-button="confirm"]')
    await expect(page.locator("#dialog .dialog-error")).to_have_text(
        "无法到场：工单当前为“已解决”，只有“待接单”或“报警已消除”或“已接单”的工单才能记录“已到场”")
    assert 409 in http_statuses(watched.take_errors())
    await page.click('#dialog [data-dialog-button="cancel"]')
    await expect(page.locator("#order-detail .wo-state").first).to_have_text("已解决")
    await expect(page.locator('[data-dispatch="on-site"]')).to_be_disabled()


# --------------------------------------------------------------------------- screenshots


#: Every priority's follow-up due 2 h after the repair, overdue an hour later.
SCREEN = "work_orders:\n  priorities:\n" + "".join(
    f"    {p}: {{follow_up_after: 2h, follow_up_within: 1h}}\n" for p in ("P1", "P2", "P3"))

SHOWCASE = [
    {"category": "water_leak", "description": "楼上漏水，卫生间天花板滴水", "building": "3号楼",
     "floor": "12", "room": "1201", "reporter": "张女士", "contact": "13812345678"},
    {"category": "access_fault", "description": "单元门禁刷卡无反应", "channel": "patrol",
     "building": "5号楼", "floor": "1", "room": "2单元门厅", "reporter": "巡逻岗 王师傅"},
    {"category": "elevator_fault", "description": "电梯按钮失灵，到 8 层不停", "device": "E1",
     "reporter": "李先生", "contact": "13987654321"},
    {"category": "noise", "description": "凌晨装修噪音", "channel": "walk_in", "building": "7号楼",
     "floor": "6", "room": "602", "reporter": "赵阿姨", "contact": "13700001111"},
    {"category": "facility_damage", "description": "北门路灯不亮", "channel": "app",
     "building": "北门", "reporter": "业主 App", "priority": "P2",
     "priority_reason": "夜间出入安全"},
]


async def test_screenshots_of_the_reports_and_follow_ups_pages(
        mosquitto: Mosquitto, tmp_path: Path, browser_context: OpenContext) -> None:
    """The two pages with a few reports in every state, in zh-CN at 1920x1080. With
    PROPGW_DOC_SCREENSHOTS=1 (scripts/console-screenshots.sh) they replace
    docs/img/console-reports-zh.png and docs/img/console-followups-zh.png."""
    out = DOC_IMAGES if os.environ.get("PROPGW_DOC_SCREENSHOTS") == "1" else tmp_path
    # The gateway's wall clock ends up near the browser's: the header clock and the times
    # on the page agree.
    clock = FakeClock(wall_offset=time.time() - 4 * 3600)
    async with serving(site_config(tmp_path, mosquitto.port, SCREEN), mosquitto.port,
                       clock) as loop:
        made = []
        for body in SHOWCASE:
            status, order = await loop.api.post("/api/v1/reports", body)
            assert status == 200, order
            made.append(order)
        leak, door, lift, noise, lamp = made
        await api_act(loop, leak, "assign", {"role": "engineering", "person": "刘工"})
        for order in (leak, door):
            await api_act(loop, order, "on-site")
            await api_act(loop, order, "resolve", {"note": "已修复"})
        await loop.advance(2400, step=60)
        await api_act(loop, lift, "resolve", {"note": "更换按钮板"})
        await api_act(loop, lamp, "assign", {"role": "patrol", "person": "陈师傅"})
        await api_act(loop, lamp, "acknowledge")
        await loop.advance(7200, step=300)
        await api_act(loop, noise, "resolve", {"note": "已劝导施工方"})
        await loop.advance(2220, step=60)
        await api_act(loop, lift, "follow-up", {"reached": False, "comment": "无人接听"})
        await loop.advance(60, step=10)  # the health sees the outbox empty again
        status, health = await loop.api.get("/api/v1/health")
        assert status == 200 and health["status"] == "ok", health

        watched = await browser_context(loop.base)
        page = await watched.new_page()
        await page.set_viewport_size({"width": 1920, "height": 1080})
        await page.emulate_media(reduced_motion="reduce")
        await login(page, "wang")
        await expect(page.locator("#followups-badge")).to_have_text("3")
        await page.click("#nav-followups")
        await expect(page.locator("#followups-due tbody tr")).to_have_count(3)
        await expect(page.locator("#followups-due tr.fu-overdue")).to_have_count(2)
        await expect(page.locator("#followups-upcoming tbody tr")).to_have_count(1)
        await expect(page.locator("#banner-health")).to_have_count(0)
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        shot = out / "console-followups-zh.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000

        await page.click("#nav-reports")
        await expect(page.locator("#reports-list tbody tr")).to_have_count(5)
        await fill_report(page, category="power_loss", channel="phone", building="2号楼",
                          floor="4", room="402", description="整层停电",
                          reporter="孙先生")
        await expect(page.locator("#report-graded")).to_have_attribute("data-priority", "P1")
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        shot = out / "console-reports-zh.png"
        await page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000
        await watched.context.close()  # its live feed ends before the gateway does
