"""The operator console's page in a real headless Chromium (Debian's, driven by Playwright)
against a real gateway, real MQTT devices on a real mosquitto, and a real user file.

What a control room relies on: an entrapment is on the board within a second with its
countdown; one operator's acknowledgement shows in every open browser without a reload; the work
order shows the platform's answer; a viewer cannot act (no button, and the API says 403); a
latched alarm is reset, and a refusal is shown in words; the page never asks anything of another
origin and throws no error; both languages cover every label.

Every page opened here is watched: a request outside the gateway's origin is blocked and fails
the test, as does a JavaScript error or a ``console.error`` (Chromium logs every 4xx answer
that way: a test that provokes one takes it with ``take_errors``).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import Locator, Page, Route, expect

from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from tests.browser import WatchedContext, http_statuses, origin_of
from tests.console_support import (
    PASSWORD,
    SITE,
    STATUS_TOKEN,
    Running,
    add_users,
    console_config,
    running_console,
)
from tests.support import Mosquitto

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto, pytest.mark.slow]

STATIC = Path(__file__).parent.parent / "gateway" / "console" / "static"
DOC_IMAGES = Path(__file__).parent.parent / "docs" / "img"

OpenContext = Callable[[str], Awaitable[WatchedContext]]


# --------------------------------------------------------------------------- helpers


async def login(page: Page, name: str, password: str = PASSWORD) -> None:
    await page.fill("#f-name", name)
    await page.fill("#f-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#live")).to_have_class(re.compile(r"\blive-live\b"))
    await expect(page.locator("#board-loading")).to_be_hidden()


def row(page: Page, alarm_id: str) -> Locator:
    return page.locator(f'.alarm[data-alarm-id="{alarm_id}"]')


async def eventually(check: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    """Waits until ``check()`` holds (polling, bounded)."""
    async with asyncio.timeout(deadline):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


async def no_reload_marker(page: Page) -> None:
    """Marks the document; :func:`assert_not_reloaded` fails if the page was loaded again."""
    await page.evaluate("window.__notReloaded = true")


async def assert_not_reloaded(page: Page) -> None:
    assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"


async def platform_answer(run: Running, order_id: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{run.base}/api/v1/work-orders/{order_id}/status", json=body,
            headers={"Authorization": f"Bearer {STATUS_TOKEN}"}) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


class CuttableLink:
    """A TCP relay between the browser and the gateway that can drop every connection and
    refuse new ones for a while: a network blip, for real, on loopback."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = False
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CuttableLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)


@pytest.fixture
async def console(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Running]:
    """The gateway of tests/console_support.py with its users (wang operator, li viewer, zhao
    engineer, admin admin)."""
    config = console_config(tmp_path, mosquitto.port)
    add_users(config)
    async with running_console(config, mosquitto.port) as run:
        yield run


# --------------------------------------------------------------------------- the alarm board


async def test_an_entrapment_is_on_the_board_within_a_second_with_its_countdown(
        console: Running, browser_context: OpenContext) -> None:
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await login(page, "wang")
    await expect(page.locator("#board-empty")).to_be_visible()

    loop = asyncio.get_running_loop()
    started = loop.time()
    await console.publish("dev/E1/trapped", "1")
    trapped = row(page, "trapped@E1")
    await trapped.wait_for(timeout=5000)
    took = loop.time() - started
    assert took < 1.0, f"the entrapment took {took:.2f} s to reach the board"

    await expect(trapped).to_have_attribute("data-priority", "P0")
    await expect(trapped.locator(".a-title")).to_have_text("电梯困人")
    await expect(trapped.locator(".a-state")).to_have_text("报警未确认")
    await expect(trapped.locator(".a-loc")).to_have_text("1号楼 3层 东区")
    await expect(trapped.locator(".wo-esc")).to_contain_text("第 1/4 级")
    await expect(trapped.locator(".wo-esc")).to_contain_text("中控室")
    countdown = trapped.locator(".wo-respond .countdown")
    await expect(countdown).to_have_text(re.compile(r"^到场剩余 0[45]:\d\d$"))
    first = await countdown.text_content()
    await expect(countdown).not_to_have_text(first or "", timeout=3000)  # it counts down
    await expect(page.locator("#count-P0")).to_have_attribute("data-count", "1")
    # A life-safety alarm that nobody acknowledged sounds (operators hear it).
    await expect(trapped).to_have_attribute("data-sounding", "true")
    assert await page.evaluate("document.documentElement.dataset.sound") == "P0"


async def test_countdowns_and_the_clock_follow_the_gateway_not_the_pc(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock,
        browser_context: OpenContext) -> None:
    """The gateway's clock reads 2026-01-01 08:00 (site time) while this PC's is months later:
    an entrapment raised now has its five on-site minutes left on the board, not months
    overdue, the header clock shows the gateway's time and notes the PC's skew."""
    config = console_config(tmp_path, mosquitto.port)
    add_users(config)
    async with running_console(config, mosquitto.port, clock=fake_clock) as run:
        watched = await browser_context(run.base)
        page = await watched.new_page()
        await login(page, "wang")
        await expect(page.locator("#board-empty")).to_be_visible()
        await run.publish("dev/E1/trapped", "1")
        trapped = row(page, "trapped@E1")
        await trapped.wait_for(timeout=5000)
        countdown = trapped.locator(".wo-respond .countdown")
        await expect(countdown).to_have_text(re.compile(r"^到场剩余 0[45]:\d\d$"))
        await expect(countdown).not_to_have_class(re.compile(r"overdue"))
        clock = page.locator("header .clock")
        await expect(clock).to_have_text(re.compile(r"^2026-01-01 08:0\d:\d\d UTC\+8$"))
        await expect(clock).to_have_class(re.compile(r"clock-skew"))
        await expect(clock).to_have_attribute("title", re.compile(r"^本机时钟与网关相差 "))
        # The gateway's time moves on (3 minutes later): the countdown follows it.
        await fake_clock.advance(180)
        await page.reload()
        await expect(row(page, "trapped@E1").locator(".wo-respond .countdown")).to_have_text(
            re.compile(r"^到场剩余 0[12]:\d\d$"))
        watched.assert_clean()
        watched.stop_recording()  # the gateway stops next, under the open page


async def test_an_acknowledgement_shows_in_a_second_browser_without_a_reload(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    operator = await (await browser_context(console.base)).new_page()
    await login(operator, "wang")
    watcher = await (await browser_context(console.base)).new_page()
    await login(watcher, "wang")
    await no_reload_marker(watcher)
    await expect(row(watcher, "trapped@E1").locator(".a-state")).to_have_text("报警未确认")
    await expect(row(watcher, "trapped@E1")).to_have_attribute("data-sounding", "true")

    await row(operator, "trapped@E1").locator('[data-action="acknowledge"]').click()

    for page in (operator, watcher):
        trapped = row(page, "trapped@E1")
        await expect(trapped.locator(".a-state")).to_have_text("报警已确认", timeout=1500)
        await expect(trapped.locator('[data-action="acknowledge"]')).to_have_count(0)
        await expect(trapped).to_have_attribute("data-sounding", "false")
    await assert_not_reloaded(watcher)
    assert await watcher.evaluate("document.documentElement.dataset.sound") == ""


async def test_silencing_one_alarm_leaves_the_others_sounding(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    await console.publish("dev/W1/wet", "1")
    page = await (await browser_context(console.base)).new_page()
    await login(page, "wang")
    await expect(row(page, "leak@W1")).to_have_attribute("data-sounding", "true")
    await row(page, "trapped@E1").locator('[data-action="silence"]').click()
    await expect(row(page, "trapped@E1")).to_have_attribute("data-sounding", "false")
    await expect(row(page, "trapped@E1").locator(".a-state")).to_have_text("报警未确认")
    await expect(row(page, "leak@W1")).to_have_attribute("data-sounding", "true")
    assert await page.evaluate("document.documentElement.dataset.sound") == "P1"
    # The login click let the page make sound; it played the P0 and P1 calls.
    assert await page.evaluate("document.documentElement.dataset.audio") == "on"
    assert int(await page.evaluate("document.documentElement.dataset.soundPlayed")) >= 1


async def test_a_viewer_sees_the_board_but_cannot_acknowledge(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await login(page, "li")
    trapped = row(page, "trapped@E1")
    await expect(trapped.locator(".a-state")).to_have_text("报警未确认")
    await expect(page.locator(".alarm [data-action]")).to_have_count(1)  # "details" only
    await expect(trapped.locator('[data-action="details"]')).to_have_text("详情")
    await expect(page.locator("#sound-enable")).to_have_count(0)
    await expect(trapped).to_have_attribute("data-sounding", "false")
    await trapped.locator('[data-action="details"]').click()
    await expect(page.locator("#dialog .dialog-buttons button")).to_have_count(1)  # close

    # The API refuses too, with the viewer's own session and CSRF token.
    session = await watched.context.request.get(f"{console.base}/api/v1/session")
    csrf = (await session.json())["csrf_token"]
    refused = await watched.context.request.post(
        f"{console.base}/api/v1/alarms/trapped@E1/acknowledge", data={},
        headers={"X-CSRF-Token": csrf})
    assert refused.status == 403
    assert "operator" in (await refused.json())["error"]
    await page.keyboard.press("Escape")
    await expect(trapped.locator(".a-state")).to_have_text("报警未确认")


async def test_a_latched_leak_is_reset_after_a_refusal_shown_in_words(
        console: Running, browser_context: OpenContext) -> None:
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await login(page, "wang")
    await console.publish("dev/W1/wet", "1")
    await expect(row(page, "leak@W1").locator(".a-state")).to_have_text("报警未确认")
    await console.publish("dev/W1/wet", "0")
    leak = row(page, "leak@W1")
    await expect(leak.locator(".a-state")).to_have_text("锁存待复位")
    # Its work order is not cleared: the board says it is latched, and so does the order.
    await expect(leak.locator(".wo-latched")).to_have_text("已锁存")
    await expect(leak.locator(".wo-link")).to_have_text("待接单")
    await leak.locator(".wo-link").click()
    detail = page.locator("#order-detail")
    await expect(detail.locator(".wo-latched").first).to_have_text("已锁存")
    await expect(detail).to_contain_text("需人工复位后才会消除")
    events = await detail.locator("table.versions tbody tr td:nth-child(3)").all_text_contents()
    assert "报警已锁存" in events, events
    await page.click("#nav-board")

    # Reset before acknowledging: the lifecycle refuses and the dialog says why.
    await leak.locator('[data-action="reset"]').click()
    dialog = page.locator("#dialog")
    await expect(dialog).to_be_visible()
    await dialog.locator("textarea").fill("泵房已排水")
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(dialog.locator(".dialog-error")).to_have_text("无法复位：请先确认报警，再复位")
    assert 409 in http_statuses(watched.take_errors())
    await dialog.locator('[data-dialog-button="cancel"]').click()

    await leak.locator('[data-action="acknowledge"]').click()
    await expect(leak.locator(".a-state")).to_have_text("锁存待复位")
    await expect(leak.locator('[data-action="acknowledge"]')).to_have_count(0)
    await leak.locator('[data-action="reset"]').click()
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(leak).to_have_count(0)
    await expect(page.locator("#board-empty")).to_be_visible()


async def test_shelving_asks_for_a_reason_and_moves_the_alarm_aside(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/W1/wet", "1")
    page = await (await browser_context(console.base)).new_page()
    await login(page, "wang")
    leak = row(page, "leak@W1")
    await leak.locator('[data-action="details"]').click()
    dialog = page.locator("#dialog")
    await dialog.locator('[data-dialog-button="shelve"]').click()
    await expect(dialog.locator("select[name=duration]")).to_be_visible()
    await dialog.locator('[data-dialog-button="confirm"]').click()  # no reason: not sent
    await expect(dialog.locator("textarea[name=reason]")).to_be_visible()
    await dialog.locator("textarea[name=reason]").fill("维修中，已派人")
    await dialog.locator('[data-dialog-button="confirm"]').click()
    hidden = page.locator("#board-hidden").locator('[data-alarm-id="leak@W1"]')
    await expect(hidden.locator(".a-state")).to_have_text("已搁置")
    await expect(hidden.locator(".a-tags")).to_contain_text("wang 搁置至")
    await expect(hidden).to_have_attribute("data-sounding", "false")
    await hidden.locator('[data-action="unshelve"]').click()
    await expect(page.locator("#board-list").locator('[data-alarm-id="leak@W1"]')).to_be_visible()


async def test_an_engineer_takes_an_alarm_out_of_service_and_back(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    operator = await (await browser_context(console.base)).new_page()
    await login(operator, "wang")
    await row(operator, "trapped@E1").locator('[data-action="details"]').click()
    buttons = operator.locator("#dialog [data-dialog-button]")
    await expect(buttons).to_have_text(["确认", "备注", "关闭"])  # P0: no shelving

    page = await (await browser_context(console.base)).new_page()
    await login(page, "zhao")
    await row(page, "trapped@E1").locator('[data-action="details"]').click()
    dialog = page.locator("#dialog")
    await dialog.locator('[data-dialog-button="remove-from-service"]').click()
    await dialog.locator("textarea[name=reason]").fill("电梯年检")
    await dialog.locator('[data-dialog-button="confirm"]').click()
    aside = page.locator("#board-hidden").locator('[data-alarm-id="trapped@E1"]')
    await expect(aside.locator(".a-state")).to_have_text("已停用")
    await expect(aside.locator(".a-tags")).to_contain_text("zhao 停用：电梯年检")
    await expect(operator.locator("#board-hidden").locator(
        '[data-alarm-id="trapped@E1"] [data-action="return-to-service"]')).to_have_count(0)
    await aside.locator('[data-action="return-to-service"]').click()
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(page.locator("#board-list").locator('[data-alarm-id="trapped@E1"]')
                 ).to_be_visible()


# --------------------------------------------------------------------------- work orders


async def test_the_work_order_shows_the_platforms_answer_live(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    page = await (await browser_context(console.base)).new_page()
    await login(page, "li")
    trapped = row(page, "trapped@E1")
    await expect(trapped.locator(".wo-status")).to_contain_text("待接单")
    order_id = await trapped.locator(".wo-link").get_attribute("href")
    assert order_id is not None
    order_id = order_id.removeprefix("#/orders/")
    await page.click("#nav-orders")
    listed = page.locator(f'tr[data-order-id="{order_id}"]')
    await expect(listed).to_contain_text("电梯困人")
    await expect(listed).to_contain_text("第 1/4 级 中控室")
    await expect(listed).to_contain_text(re.compile(r"到场剩余 0[45]:\d\d"))
    await listed.locator("a.order-link").click()
    await expect(page.locator("#platform-answer")).to_contain_text("尚未接单")
    await no_reload_marker(page)

    await platform_answer(console, order_id, {"status": "acknowledged", "by": "张师傅",
                                              "note": "五分钟内到"})
    answer = page.locator("#platform-answer")
    await expect(answer).to_contain_text("张师傅")
    await expect(answer).to_contain_text("五分钟内到")
    await expect(page.locator("#order-detail")).to_contain_text("已接单")
    await platform_answer(console, order_id, {"status": "on_site", "by": "张师傅"})
    await expect(page.locator("#order-detail .wo-state").first).to_have_text("已到场")
    await assert_not_reloaded(page)
    await page.click("#nav-board")
    await expect(row(page, "trapped@E1").locator(".wo-status")).to_contain_text("已到场")

    # Resolved, it leaves the open list for the closed ones; its timeline has every version.
    await page.click("#nav-orders")
    await platform_answer(console, order_id, {"status": "resolved", "by": "张师傅",
                                              "note": "已救出，电梯停用待修"})
    await expect(page.locator(f'#orders-open tr[data-order-id="{order_id}"]')).to_have_count(0)
    closed = page.locator(f'#orders-recent tr[data-order-id="{order_id}"]')
    await expect(closed).to_contain_text("已解决")
    await closed.locator("a.order-link").click()
    versions = page.locator("#order-detail table.versions tbody tr")
    await expect(versions.first).to_contain_text("解决")
    events = await versions.locator("td:nth-child(3)").all_text_contents()
    assert {"派发", "接单", "到场", "解决"} <= set(events), events
    await expect(page.locator("#platform-answer")).to_contain_text("已救出，电梯停用待修")


# --------------------------------------------------------------------------- the other pages


async def test_every_page_stays_on_the_gateways_origin(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    await console.publish("dev/W1/wet", "1")
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await login(page, "admin")
    for nav, ready in [("orders", "#orders-open table"), ("reports", "#report-form select"),
                       ("followups", "#followups-none"), ("devices", "#devices table"),
                       ("history", "#history-results table"), ("kpi", "#kpi-hourly svg"),
                       ("users", "#users table"), ("board", "#board-list .alarm")]:
        await page.click(f"#nav-{nav}")
        await expect(page.locator(ready).first).to_be_visible()
    await page.click("#nav-kpi")
    await page.click("#kpi-tab-month")
    await expect(page.locator("#sum-orders")).to_be_visible()
    await page.click("#kpi-tab-alarms")
    for hours in ("168", "720", "24"):
        await page.click(f'[data-hours="{hours}"]')
        await expect(page.locator(f'[data-hours="{hours}"]')).to_have_attribute(
            "aria-pressed", "true")
        await expect(page.locator("#kpi-hourly rect.bar")).to_have_count(int(hours))
    assert watched.requests, "the page made requests"
    assert all(origin_of(url) == watched.origin for url in watched.requests), watched.requests
    assert not watched.off_origin


async def test_history_filters_page_and_export_with_the_same_filters(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    await console.publish("dev/W1/wet", "1")
    page = await (await browser_context(console.base)).new_page()
    await login(page, "wang")
    await row(page, "leak@W1").locator('[data-action="acknowledge"]').click()
    await expect(row(page, "leak@W1").locator(".a-state")).to_have_text("报警已确认")
    await page.click("#nav-history")
    results = page.locator("#history-results tbody tr")
    await expect(results).to_have_count(3)
    await page.select_option("select[name=priority]", "P1")
    await page.fill("input[name=text]", "wang")
    await page.click("#history-search")
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("确认")
    await expect(results.first).to_contain_text("水泵房")
    href = await page.locator("#history-csv").get_attribute("href")
    assert href is not None and href.startswith("/api/v1/history.csv?")
    assert "priority=P1" in href and "text=wang" in href and "hours=24" in href
    async with page.expect_download() as download_info:
        await page.click("#history-csv")
    download = await download_info.value
    text = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8-sig")
    lines = text.strip().splitlines()
    assert len(lines) == 2 and "acknowledged" in lines[1] and "wang" in lines[1]

    # Pages of 100, older ones on request.
    op = await console.client()
    await op.login("wang")
    for n in range(120):
        assert (await op.post("/api/v1/alarms/trapped@E1/comment", {"text": f"#{n}"}))[0] == 200
    await page.select_option("select[name=priority]", "")
    await page.fill("input[name=text]", "")
    await page.click("#history-search")
    await expect(results).to_have_count(100)
    await expect(results.first).to_contain_text("#119")
    await page.click("#history-more")
    await expect(results).to_have_count(123)
    await expect(page.locator("#history-more")).to_be_hidden()


async def test_the_devices_page_shows_each_device_and_its_points(
        console: Running, browser_context: OpenContext) -> None:
    page = await (await browser_context(console.base)).new_page()
    await login(page, "li")
    await page.click("#nav-devices")
    elevator = page.locator('tr[data-device="E1"]')
    await expect(elevator).to_contain_text("1号梯")
    await expect(elevator).to_contain_text("电梯")
    await expect(elevator).to_contain_text("已连接")
    await expect(elevator.locator("table.points")).to_contain_text("trapped")
    await expect(elevator.locator(".readings")).to_have_text("尚未收到读数")
    await console.publish("dev/E1/trapped", "0")
    await page.click("#devices-refresh")
    await expect(elevator.locator("table.points .value")).to_have_text("0")
    await expect(elevator.locator("table.points")).to_contain_text("良好")
    await expect(elevator.locator(".readings")).to_contain_text("已收到 1 个读数")


async def test_an_admin_manages_users(console: Running, browser_context: OpenContext) -> None:
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await login(page, "admin")
    await page.click("#nav-users")
    await expect(page.locator("#users tbody tr")).to_have_count(4)
    await page.click("#user-add")
    dialog = page.locator("#dialog")
    await dialog.locator("input[name=name]").fill("zhou")
    await dialog.locator("select[name=role]").select_option("operator")
    await dialog.locator("input[name=password]").fill("short")
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(dialog).to_be_visible()  # the form refuses a short password itself
    await dialog.locator("input[name=password]").fill("a long enough password")
    await dialog.locator('[data-dialog-button="confirm"]').click()
    zhou = page.locator('tr[data-user="zhou"]')
    await expect(zhou).to_contain_text("值班员")
    await zhou.locator('[data-action="role"]').click()
    await dialog.locator("select[name=role]").select_option("engineer")
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(zhou).to_contain_text("工程师")
    await zhou.locator('[data-action="delete"]').click()
    await dialog.locator('[data-dialog-button="confirm"]').click()
    await expect(zhou).to_have_count(0)
    # Non-admins do not get the page at all.
    other = await (await browser_context(console.base)).new_page()
    await login(other, "zhao")
    await expect(other.locator("#nav-users")).to_have_count(0)


# --------------------------------------------------------------------------- login, languages


async def test_login_shows_the_gateways_refusals(console: Running,
                                                 browser_context: OpenContext) -> None:
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await expect(page.locator("#first-admin")).to_have_count(0)
    error = page.locator("#login-error")
    await page.fill("#f-name", "wang")
    for _ in range(5):
        await page.fill("#f-password", "wrong password")
        await page.click("#login-submit")
        await expect(error).to_have_text("用户名或密码错误。")
        await page.evaluate("document.getElementById('login-error').textContent = ''")
    await page.fill("#f-password", PASSWORD)
    await page.click("#login-submit")
    await expect(error).to_have_text(re.compile(r"^登录失败次数过多，请 \d+ 秒后再试。$"))
    errors = watched.take_errors()
    assert sorted(http_statuses(errors)) == [401] * 5 + [429], errors


async def test_without_users_the_login_says_how_to_create_the_first_admin(
        mosquitto: Mosquitto, tmp_path: Path, browser_context: OpenContext) -> None:
    config = console_config(tmp_path, mosquitto.port)
    async with running_console(config, mosquitto.port) as run:
        page = await (await browser_context(run.base)).new_page()
        first = page.locator("#first-admin")
        await expect(first).to_contain_text(
            "propgw users add -c <site.yaml> <name> --role admin")
        await expect(first).to_contain_text("没有默认密码")
        await page.context.close()  # before the gateway stops under it


async def test_the_language_is_switched_and_remembered(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    page = await (await browser_context(console.base)).new_page()
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await expect(page.locator("#login-submit")).to_have_text("登录")
    await page.click("#lang-switch")
    await expect(page.locator("#login-submit")).to_have_text("Log in")
    await login(page, "wang")
    trapped = row(page, "trapped@E1")
    await expect(trapped.locator(".a-title")).to_have_text("Elevator entrapment")
    await expect(trapped.locator(".a-msg")).to_have_text("passenger trapped")
    await expect(trapped.locator(".a-state")).to_have_text("Unacknowledged")
    await expect(trapped.locator(".a-loc")).to_have_text("Bldg 1, floor 3, zone East")
    await expect(trapped.locator(".wo-esc")).to_contain_text("level 1/4 Control room")
    await expect(trapped.locator(".a-since .elapsed")).to_have_text(re.compile(r"^\d+ s$"))
    await expect(page.locator("#nav-orders")).to_have_text("Work orders")
    await page.reload()
    await expect(row(page, "trapped@E1").locator(".a-state")).to_have_text("Unacknowledged")
    assert await page.evaluate("document.documentElement.lang") == "en"
    await page.click("#lang-switch")
    await expect(row(page, "trapped@E1").locator(".a-state")).to_have_text("报警未确认")
    await expect(row(page, "trapped@E1").locator(".a-since .elapsed")).to_have_text(
        re.compile(r"^\d+秒$"))
    # Times are the site's (Asia/Shanghai, UTC+8), whatever the browser's zone is.
    await expect(page.locator("#clock")).to_contain_text("UTC+8")


async def test_both_languages_have_every_label(console: Running,
                                               browser_context: OpenContext) -> None:
    page = await (await browser_context(console.base)).new_page()
    keys = await page.evaluate("""async () => {
        const m = await import("/static/js/strings.js");
        return [Object.keys(m.ZH), Object.keys(m.EN)];
    }""")
    zh, en = set(keys[0]), set(keys[1])
    assert zh == en, f"only in zh: {zh - en}; only in en: {en - zh}"
    used = set()
    for path in STATIC.rglob("*.js"):
        used |= set(re.findall(r"""\bt\(\s*"([a-z0-9_.-]+)\"""", path.read_text()))
    assert used and used <= zh, f"labels used but missing: {used - zh}"


async def test_health_and_flood_banners(mosquitto: Mosquitto, tmp_path: Path,
                                        browser_context: OpenContext) -> None:
    """The gateway's upstream here is unreachable (health degraded), and two new alarms within
    a minute make a flood (flood.start_above: 1)."""
    config = load_config_text(SITE.format(state=tmp_path / "state", port=mosquitto.port,
                                          token=STATUS_TOKEN)
                              + "alarms: {flood: {start_above: 1, end_below: 1, window: 60s}}\n")
    add_users(config)
    async with running_console(config, mosquitto.port) as run:
        await run.publish("dev/E1/trapped", "1")  # its work order finds no platform
        op = await run.client()
        await op.login("wang")
        async with asyncio.timeout(5):
            while (await op.get("/api/v1/health"))[1]["status"] == "ok":
                await asyncio.sleep(0.05)
        watched = await browser_context(run.base)
        page = await watched.new_page()
        await login(page, "wang")
        await expect(page.locator("#banner-flood")).to_have_count(0)
        await run.publish("dev/W1/wet", "1")
        flood = page.locator("#banner-flood")
        await expect(flood).to_contain_text("报警泛滥")
        await expect(flood).to_contain_text("2 条新报警")
        health = page.locator("#banner-health")
        await expect(health).to_contain_text("网关状态：降级")
        await expect(health).to_contain_text("与平台的连接中断")
        await page.context.close()


async def test_a_live_update_keeps_the_keyboard_focus(
        console: Running, browser_context: OpenContext) -> None:
    await console.publish("dev/E1/trapped", "1")
    page = await (await browser_context(console.base)).new_page()
    await login(page, "wang")
    details = row(page, "trapped@E1").locator('[data-action="details"]')
    await details.focus()
    op = await console.client()
    await op.login("zhao")
    assert (await op.post("/api/v1/alarms/trapped@E1/acknowledge", {}))[0] == 200
    await expect(row(page, "trapped@E1").locator(".a-state")).to_have_text("报警已确认")
    assert await page.evaluate(
        "document.activeElement.dataset.action === 'details' && "
        "document.activeElement.closest('.alarm').dataset.alarmId === 'trapped@E1'")
    await page.keyboard.press("Enter")  # a real button: the keyboard opens the details
    dialog = page.locator("#dialog")
    await expect(dialog).to_contain_text("zhao")  # the alarm's journal names who acknowledged
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()


async def test_an_ended_session_returns_to_the_login(
        console: Running, browser_context: OpenContext) -> None:
    watched = await browser_context(console.base)
    page = await watched.new_page()
    await login(page, "wang")
    admin = await console.client()
    await admin.login("admin")
    async with admin.http.patch(f"{console.base}/api/v1/users/wang", json={"role": "viewer"},
                                headers={"X-CSRF-Token": admin.csrf}) as response:
        assert response.status == 200
    await page.click("#nav-devices")  # the next request finds the session gone
    await expect(page.locator("#login-error")).to_have_text("登录已过期，请重新登录。")
    assert 401 in http_statuses(watched.take_errors())
    await login(page, "wang")
    await expect(page.locator("#who")).to_contain_text("查看员")


async def test_work_order_history_is_shown_when_the_gateway_keeps_one(
        console: Running, browser_context: OpenContext) -> None:
    """The answers may carry `versions` (one order) and `recent` (closed orders) once the
    gateway keeps a work-order history; the page reads every shape it may take."""
    page = await (await browser_context(console.base)).new_page()
    shapes = await page.evaluate("""async () => {
        const m = await import("/static/js/pages/orders.js");
        const o = {id: "a", seq: 3};
        const v = [{id: "a", seq: 1}, o];
        const show = (x) => { const r = m.unpackOrder(x);
            return [r.order && r.order.seq, r.versions && r.versions.length]; };
        return [show(o), show({...o, versions: v}), show({latest: o, versions: v}),
                show({order: o, versions: v}), show(null)];
    }""")
    assert shapes == [[3, None], [3, 2], [3, 2], [3, 2], [None, None]]


# --------------------------------------------------------------------------- the feed


async def test_a_network_blip_loses_no_event(console: Running,
                                             browser_context: OpenContext) -> None:
    """The connection drops and stays down while things happen; when it is back the browser
    resumes the feed where it left off (Last-Event-ID) and shows every change, without reading
    the board again or reloading."""
    async with CuttableLink(int(urlsplit(console.base).port or 0)) as link:
        watched = await browser_context(link.base)
        page = await watched.new_page()
        await login(page, "wang")
        await no_reload_marker(page)
        await console.publish("dev/E1/trapped", "1")
        await expect(row(page, "trapped@E1").locator(".a-state")).to_have_text("报警未确认")

        link.down = True
        link.cut()
        await expect(page.locator("#live")).to_have_class(re.compile(r"live-reconnecting"))
        op = await console.client()
        await op.login("zhao")
        assert (await op.post("/api/v1/alarms/trapped@E1/acknowledge", {}))[0] == 200
        await console.publish("dev/W1/wet", "1")
        await console.wait_alarm(op, "leak@W1", "active_unacknowledged")
        await expect(page.locator("#banner-connection")).to_be_visible(timeout=4000)
        link.down = False

        await expect(page.locator("#live")).to_have_class(re.compile(r"live-live"))
        await expect(row(page, "trapped@E1").locator(".a-state")).to_have_text("报警已确认")
        await expect(row(page, "leak@W1").locator(".a-state")).to_have_text("报警未确认")
        await expect(page.locator("#banner-connection")).to_have_count(0)
        await assert_not_reloaded(page)
        reads = [u for u in watched.requests if u.endswith("/api/v1/alarms")]
        assert len(reads) == 1, "resumed, not re-read"
        watched.take_errors()  # the dropped stream and the refused reconnects
        await watched.context.close()


async def test_a_resync_rereads_the_board(console: Running,
                                          browser_context: OpenContext) -> None:
    """The gateway says `resync` (it restarted, or the page fell too far behind): the page
    reads the board again and follows a fresh feed."""
    watched = await browser_context(console.base)
    streams: list[str] = []

    async def first_stream_resyncs(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:
            await route.fulfill(status=200, content_type="text/event-stream",
                                body='retry: 1000\n\nid: 0-9\nevent: resync\n'
                                     'data: {"reason": "a new gateway run"}\n\n')
        else:
            await route.continue_()

    await watched.context.route("**/api/v1/events*", first_stream_resyncs)
    page = await watched.new_page()
    await login(page, "wang")
    await eventually(lambda: len(streams) > 1, "the page opened a fresh feed")
    assert "last_event_id" not in streams[1], "after a resync the feed starts afresh"
    await eventually(lambda: sum(u.endswith("/api/v1/alarms") for u in watched.requests) >= 2,
                     "the board was read again")
    await console.publish("dev/E1/trapped", "1")
    await expect(row(page, "trapped@E1")).to_be_visible()


# --------------------------------------------------------------------------- screenshots


SHOWCASE = """
site: {{id: sunshine, name: 阳光花园, gateway_id: gw-01}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream:
  broker: devices
  status_api: {{token: {token}}}
console: {{port: 0}}
devices:
  - {{id: B1-L1, name: 1号楼1号梯, driver: mqtt, kind: elevator,
     location: {{building: "1", floor: "12", zone: 东区}},
     points: [{{name: trapped, topic: dev/B1-L1/trapped, type: int}}]}}
  - {{id: F2-Z2, name: 消防主机 防区2, driver: mqtt, kind: fire_zone,
     location: {{building: "2", floor: B1, zone: 地下车库}},
     points: [{{name: fire, topic: dev/F2-Z2/fire, type: int}}]}}
  - {{id: PUMP, name: 生活水泵房, driver: mqtt, kind: water_sensor,
     location: {{building: "3", floor: B2, room: 泵房}},
     points: [{{name: wet, topic: dev/PUMP/wet, type: int}}]}}
  - {{id: N-GATE, name: 北门门禁, driver: mqtt, kind: door,
     location: {{building: "5", floor: "1", zone: 北门}},
     points: [{{name: held, topic: dev/N-GATE/held, type: int}}]}}
  - {{id: MDB, name: 配电房总表, driver: mqtt, kind: meter,
     location: {{building: 配电房}},
     points: [{{name: over, topic: dev/MDB/over, type: int}}]}}
rules:
  - {{id: trapped, devices: [B1-L1], when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0,
     message: {{zh: 轿厢内有人被困, en: passenger trapped in the car}}}}
  - {{id: fire, devices: [F2-Z2], when: {{point: fire, eq: 1}},
     category: fire_alarm, priority: P0, message: {{zh: 感烟探测器报警, en: smoke detector}}}}
  - {{id: leak, devices: [PUMP], when: {{point: wet, eq: 1}}, latching: true,
     category: water_leak, priority: P1, message: {{zh: 泵房地面积水, en: water on the floor}}}}
  - {{id: held, devices: [N-GATE], when: {{point: held, eq: 1}},
     category: door_forced, priority: P2, message: {{zh: 门被强行打开, en: door forced open}}}}
  - {{id: over, devices: [MDB], when: {{point: over, eq: 1}},
     category: power_loss, priority: P3, message: {{zh: 总表失压, en: supply voltage lost}}}}
"""


async def test_board_layout_and_screenshots_in_both_languages(
        mosquitto: Mosquitto, tmp_path: Path, browser_context: OpenContext) -> None:
    """A board with alarms of every priority and several states: legible at 1920x1080, whole
    on a 1366x768 laptop; screenshots in zh-CN and English. With PROPGW_DOC_SCREENSHOTS=1
    (scripts/console-screenshots.sh) they replace docs/img/console-board-{zh,en}.png."""
    config: GatewayConfig = load_config_text(SHOWCASE.format(
        state=tmp_path / "state", port=mosquitto.port, token=STATUS_TOKEN))
    add_users(config)
    out = DOC_IMAGES if os.environ.get("PROPGW_DOC_SCREENSHOTS") == "1" else tmp_path
    async with running_console(config, mosquitto.port) as run:
        for topic in ("B1-L1/trapped", "F2-Z2/fire", "PUMP/wet", "N-GATE/held", "MDB/over"):
            await run.publish(f"dev/{topic}", "1")
        await run.publish("dev/PUMP/wet", "0")  # latched, waiting for a reset
        op = await run.client()
        await op.login("wang")
        await run.wait_alarm(op, "leak@PUMP", "latched")
        assert (await op.post("/api/v1/alarms/fire@F2-Z2/acknowledge", {}))[0] == 200
        assert (await op.post("/api/v1/alarms/over@MDB/shelve",
                              {"reason": "供电局计划停电", "duration_s": 4 * 3600}))[0] == 200

        laptop = await browser_context(run.base)
        page = await laptop.new_page()
        await page.set_viewport_size({"width": 1366, "height": 768})
        await login(page, "wang")
        await expect(page.locator("#board-list .alarm")).to_have_count(4)
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        for button in await page.locator(".alarm button").all():
            box = await button.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 1366, "every button in view"
        assert await page.title() == "(3) 阳光花园 · 报警监控台", "unacknowledged in the tab"
        for nav, ready in [("orders", "#orders-open table"), ("devices", "#devices table"),
                           ("history", "#history-results table"), ("kpi", "#kpi-hourly svg")]:
            await page.click(f"#nav-{nav}")
            await expect(page.locator(ready).first).to_be_visible()
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"), nav
        await laptop.context.close()

        for lang in ("zh", "en"):
            watched = await browser_context(run.base)
            page = await watched.new_page()
            await page.set_viewport_size({"width": 1920, "height": 1080})
            if lang == "en":
                await page.click("#lang-switch")
            await login(page, "wang")
            await expect(page.locator("#board-list .alarm")).to_have_count(4)
            await expect(page.locator("#board-hidden .alarm")).to_have_count(1)
            await expect(page.locator("#banner-health")).to_have_count(0)
            sizes = await page.evaluate("""() => [".a-title", ".a-state", ".countdown",
                ".prio-code"].map((s) => parseFloat(getComputedStyle(
                document.querySelector(s)).fontSize))""")
            assert min(sizes) >= 18, f"text legible across a room: {sizes} px"
            # No flashing, for a steady picture (the page honours reduced motion).
            await page.emulate_media(reduced_motion="reduce")
            path = out / f"console-board-{lang}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(path))
            await watched.context.close()  # its live feed ends before the gateway does
            assert path.stat().st_size > 20_000
