"""Dispatch, progress and follow-up (派单, 到场, 完成, 回访) through a real gateway: its console's
REST API on a free loopback port, its work orders going upstream over a real mosquitto, on the
fake clock. A phone report is graded, escalates once, is assigned, recorded on site and
resolved from the console; its follow-up is due after 48 h (not at 47 h), an unsatisfied call
reopens it and its ladder starts again, and the platform receives every version once, in
order. Also: overdue follow-ups, a call that reaches nobody, a satisfied one that closes the
order, a restart in the middle, and the errors."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
from pydantic import ValidationError

from gateway.app import Gateway
from gateway.cli import _parser
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.console import UserStore, users_path
from gateway.errors import WorkOrderActionRefused
from gateway.orders_cli import run_orders_async
from gateway.upstream.schema import upstream_schema
from gateway.workorders import (
    Assignment,
    FollowUp,
    StatusAnswer,
    WorkOrder,
    WorkOrderDesk,
    grade_report,
    parse_instant,
)
from tests.console_support import Client, add_users, logged_in
from tests.gateway_support import gateway_on_platform, until
from tests.support import Mosquitto

PHONE = "13812345678"
MASKED = "138****5678"
HOUR = 3600.0

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
brokers:
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
console: {{port: 0}}
"""

LEAK = {"category": "water_leak", "description": "楼上漏水，天花板滴水", "channel": "phone",
        "building": "3号楼", "floor": "12", "room": "1201", "reporter": "张女士",
        "contact": PHONE}


@dataclass
class Site:
    gateway: Gateway
    config: GatewayConfig
    base: str
    clock: FakeClock
    upstream: list[dict[str, Any]]
    #: Versions the gateway sent on (its observer saw them), and how many upstream had then.
    emitted: list[WorkOrder]
    start: int
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    async def client(self, name: str) -> Client:
        return await logged_in(self.base, self.sessions, name)

    async def advance(self, seconds: float, step: float = 60.0) -> None:
        """Fake time forward, a step at a time, each once the outbox has delivered: a jump
        while a publish waits for its PUBACK would time it out on the fake clock (steps
        shorter than the publish timeout: an update fired within a step is in flight while
        the rest of that step passes)."""
        while seconds > 0:
            await self.delivered()
            await self.clock.advance(min(step, seconds))
            seconds -= step
        await self.delivered()

    async def delivered(self) -> None:
        """Every version the desk has sent has reached the platform (an update fired by the
        last step may not be in the outbox yet; the observer has seen it)."""
        outbox = self.gateway.outbox
        assert outbox is not None
        await until(lambda: not outbox.pending("mqtt")
                    and len(self.upstream) >= self.start + len(self.emitted), self.clock)

    async def until(self, count: int) -> list[dict[str, Any]]:
        await until(lambda: len(self.upstream) >= count, self.clock)
        return list(self.upstream)


@asynccontextmanager
async def running_site(tmp_path: Path, port: int, clock: FakeClock,
                       upstream: list[dict[str, Any]], *, users: bool = True
                       ) -> AsyncIterator[Site]:
    config = load_config_text(SITE.format(state=tmp_path / "state", port=port))
    if users:
        add_users(config)
    emitted: list[WorkOrder] = []
    start = len(upstream)
    async with gateway_on_platform(
            config, port, clock, topics=["pm/s1/work-orders"], observers=[_Watch(emitted)],
            received=lambda _topic, m: upstream.append(json.loads(m))) as gateway:
        assert gateway.web is not None
        site = Site(gateway, config, f"http://127.0.0.1:{gateway.web.port}", clock,
                    upstream, emitted, start)
        try:
            yield site
        finally:
            await site.delivered()
            for http in site.sessions:
                await http.close()


@dataclass
class _Watch:
    emitted: list[WorkOrder]

    def alarm(self, event: object) -> None:
        pass

    def work_order(self, order: WorkOrder) -> None:
        self.emitted.append(order)


def _path(order_id: str, action: str) -> str:
    return f"/api/v1/work-orders/{order_id}/{action}"


@pytest.mark.slow
@pytest.mark.mosquitto
async def test_report_escalate_on_site_resolve_follow_up_after_48h_unsatisfied_reopens(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    validator = jsonschema_rs.validator_for(upstream_schema())
    upstream: list[dict[str, Any]] = []
    async with running_site(tmp_path, mosquitto.port, fake_clock, upstream) as site:
        op, viewer = await site.client("wang"), await site.client("li")
        status, order = await op.post("/api/v1/reports", LEAK)
        assert status == 200 and order["priority"] == "P1", "the category grades it"
        oid = order["id"]
        p1 = site.config.work_orders.priorities["P1"]
        await site.advance(p1.ladder[0].within + 1, step=10)
        await site.until(2)
        assert upstream[-1]["event"] == "escalated" and upstream[-1]["escalation"]["level"] == 2

        status, body = await viewer.post(_path(oid, "assign"), {"role": "engineering"})
        assert status == 403, "viewers cannot dispatch"
        status, body = await op.post(_path(oid, "assign"), {"role": "engineering"}, csrf=False)
        assert status == 403 and "X-CSRF-Token" in body["error"]
        status, body = await op.post(_path(oid, "assign"), {"note": "nobody"})
        assert status == 400, "a role or a person"
        status, body = await op.post(_path(oid, "assign"), {
            "role": "engineering", "person": "维修 张工", "note": "带疏通工具"})
        assert status == 200, body
        assert body["event"] == "assigned" and body["status"] == "open", "not an acknowledgement"
        assert {k: body["assigned_to"][k] for k in ("role", "person", "note", "by")} == {
            "role": "engineering", "person": "维修 张工", "note": "带疏通工具", "by": "wang"}
        assert body["report"]["contact"] == PHONE, "the operator calls back"

        status, on_site = await op.post(_path(oid, "on-site"), {"note": "张工已到场"})
        assert status == 200 and on_site["status"] == "on_site"
        assert (on_site["status_via"], on_site["status_by"], on_site["status_note"]) == (
            "console", "wang", "张工已到场")
        assert [b["window"] for b in on_site["breaches"]] == ["acknowledge"], \
            "acknowledged 5 min late, on site within 30 min: the platform's arithmetic"
        status, again = await op.post(_path(oid, "on-site"), {})
        assert status == 409 and "it is on_site" in again["error"]
        assert again["action"] == "on_site" and again["order_id"] == oid
        status, body = await op.post(_path(oid, "follow-up"), {"reached": False})
        assert status == 409 and "needs a resolved order" in body["error"]

        await site.advance(600, step=10)
        status, resolved = await op.post(_path(oid, "resolve"), {"note": "管道已修复"})
        assert status == 200 and resolved["status"] == "resolved"
        assert resolved["status_via"] == "console"
        assert resolved["breaches"] == on_site["breaches"], "resolved within its 4 h"
        due_at = parse_instant(resolved["follow_up_by"])
        assert due_at - parse_instant(resolved["resolved_at"]) == pytest.approx(48 * HOUR)
        assert parse_instant(resolved["follow_up_overdue_at"]) - due_at == pytest.approx(
            24 * HOUR)

        status, listed = await viewer.get("/api/v1/follow-ups")
        assert status == 200 and listed["due"] == [] and listed["overdue"] == 0
        assert [i["order"]["id"] for i in listed["upcoming"]] == [oid]
        assert listed["upcoming"][0]["order"]["report"]["contact"] == MASKED, "viewers"

        await site.advance(47 * HOUR)
        await op.login("wang")  # sessions end after console.session_ttl
        await viewer.login("li")
        status, listed = await op.get("/api/v1/follow-ups")
        assert listed["due"] == [], "not due at 47 h"
        assert upstream[-1]["event"] == "resolved"
        await site.advance(1 * HOUR + 1)
        await op.login("wang")
        await viewer.login("li")
        status, listed = await op.get("/api/v1/follow-ups")
        assert [i["order"]["id"] for i in listed["due"]] == [oid], "due after 48 h"
        item = listed["due"][0]
        assert (item["overdue"], item["attempts"], listed["overdue"]) == (False, 0, 0)
        assert item["order"]["report"]["contact"] == PHONE, "operators see whom to call"
        await site.until(6)
        assert upstream[-1]["event"] == "follow_up_due"

        status, body = await viewer.post(_path(oid, "follow-up"), {"reached": False})
        assert status == 403
        status, body = await op.post(_path(oid, "follow-up"), {"reached": True})
        assert status == 400, "reached: satisfied or not"
        status, body = await op.post(_path(oid, "follow-up"), {"reached": False,
                                                                "comment": "无人接听"})
        assert status == 200 and body["event"] == "followed_up" and body["status"] == "resolved"
        status, listed = await op.get("/api/v1/follow-ups")
        assert [(i["order"]["id"], i["attempts"]) for i in listed["due"]] == [(oid, 1)], \
            "not reached: still due"

        status, reopened = await op.post(_path(oid, "follow-up"), {
            "reached": True, "satisfied": False, "comment": "仍然漏水"})
        assert status == 200, reopened
        assert (reopened["event"], reopened["status"], reopened["reopened_count"]) == (
            "reopened", "open", 1)
        assert reopened["escalation"]["level"] == 1
        assert [(f["reached"], f["satisfied"], f["by"]) for f in reopened["follow_ups"]] == [
            (False, None, "wang"), (True, False, "wang")]
        for key in ("acknowledged_at", "on_site_at", "resolved_at", "follow_up_by"):
            assert reopened[key] is None, key
        again_at = parse_instant(reopened["reopened_at"])
        assert parse_instant(reopened["respond_by"]) - again_at == pytest.approx(
            p1.on_site_within), "windows count from the reopening"
        assert reopened["breaches"] == resolved["breaches"], "the first round's are kept"
        status, listed = await op.get("/api/v1/follow-ups")
        assert listed["due"] == [] and listed["upcoming"] == []

        # The ladder starts again: the next step after its first deadline, counted from now.
        await site.advance(p1.ladder[0].within - 10, step=10)
        assert upstream[-1]["event"] != "escalated" or upstream[-1]["seq"] < reopened["seq"]
        await site.advance(20, step=10)
        orders = await site.until(reopened["seq"] + 1)
        await site.delivered()
        orders = list(upstream)
    assert [o["seq"] for o in orders] == list(range(1, len(orders) + 1)), \
        "every version once, in order"
    assert all(o["id"] == oid for o in orders)
    assert [o["event"] for o in orders] == [
        "raised", "escalated", "assigned", "on_site", "resolved", "follow_up_due",
        "followed_up", "reopened", "escalated"]
    assert orders[-1]["escalation"]["level"] == 2 and orders[-1]["status"] == "open"
    for o in orders:
        validator.validate(o)
        assert o["report"]["contact"] == MASKED


@pytest.mark.slow
@pytest.mark.mosquitto
async def test_overdue_satisfied_and_a_restart_that_keeps_the_follow_up_due(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    upstream: list[dict[str, Any]] = []
    async with running_site(tmp_path, mosquitto.port, fake_clock, upstream) as site:
        op = await site.client("wang")
        ids = []
        for room in ("1201", "1202"):
            status, order = await op.post("/api/v1/reports", {**LEAK, "room": room})
            assert status == 200
            ids.append(order["id"])
        first, second = ids
        status, body = await op.post(_path(first, "follow-up"), {"reached": False})
        assert status == 409 and "it is open" in body["error"]
        assert (await op.post(_path("nope", "resolve"), {}))[0] == 404
        status, body = await op.post(_path(first, "acknowledge"), {})
        assert status == 200 and body["status"] == "acknowledged"
        assert (await op.post(_path(first, "acknowledge"), {}))[0] == 409
        assert (await op.post(_path(first, "resolve"), {}))[0] == 200
        await site.advance(HOUR)
        assert (await op.post(_path(second, "resolve"), {}))[0] == 200
        assert (await op.post(_path(first, "assign"), {"role": "patrol"}))[0] == 409, \
            "a resolved order is not dispatched"
        await site.advance(48 * HOUR + 60)
        await site.until(6)
        await op.login("wang")

    # A restart: the outbox restores the orders (its copies are masked), the desk keeps
    # the follow-ups due and re-reads each reporter's contact from the work-order history.
    async with running_site(tmp_path, mosquitto.port, fake_clock, upstream,
                            users=False) as site:
        op = await site.client("wang")
        status, listed = await op.get("/api/v1/follow-ups")
        assert [i["order"]["id"] for i in listed["due"]] == [first, second]
        assert {i["order"]["report"]["contact"] for i in listed["due"]} == {PHONE}
        await site.advance(23 * HOUR)
        await op.login("wang")  # sessions end after console.session_ttl
        status, listed = await op.get("/api/v1/follow-ups")
        assert [(i["order"]["id"], i["overdue"]) for i in listed["due"]] == [
            (first, True), (second, False)] and listed["overdue"] == 1, \
            "overdue 24 h after falling due; overdue ones first"
        await site.advance(2 * HOUR)
        await op.login("wang")
        status, listed = await op.get("/api/v1/follow-ups")
        assert listed["overdue"] == 2

        status, body = await op.post(_path(second, "follow-up"), {"reached": False})
        assert status == 200 and body["report"]["contact"] == PHONE, \
            "a version after the restart carries the full contact at the edge"
        status, closed = await op.post(_path(first, "follow-up"), {
            "reached": True, "satisfied": True, "comment": "满意"})
        assert status == 200 and closed["event"] == "followed_up"
        status, listed = await op.get("/api/v1/follow-ups")
        assert [(i["order"]["id"], i["attempts"]) for i in listed["due"]] == [(second, 1)]
        status, body = await op.post(_path(first, "follow-up"), {"reached": False})
        assert status == 404, "closed for good"
        async with asyncio.timeout(5):
            while True:  # the history writes behind the desk
                status, history = await op.get(f"/api/v1/reports/{second}")
                if history["versions"][-1]["event"] == "followed_up":
                    break
                await asyncio.sleep(0.02)
        assert {v["report"]["contact"] for v in history["versions"]} == {PHONE}, \
            "the history keeps the contact in full across the restart"
        await site.until(8)
    assert all(o["report"]["contact"] == MASKED for o in upstream)
    assert [(o["id"], o["event"]) for o in upstream[-2:]] == [
        (second, "followed_up"), (first, "followed_up")]


# --------------------------------------------------------------------------- desk units


class _Sent(list[WorkOrder]):
    async def __call__(self, order: WorkOrder) -> None:
        self.append(order)


BASE = "site: {id: s1, name: 测试小区, gateway_id: gw1}\n"


async def _resolved_report(clock: FakeClock, sent: _Sent, config: GatewayConfig
                           ) -> tuple[WorkOrderDesk, WorkOrder]:
    desk = WorkOrderDesk(config.site, clock, sent, policies=config.work_orders)
    graded = grade_report(config, category="noise", description="夜间噪音", channel="phone",
                          logged_by="wang", contact=PHONE)
    order = await desk.open_report(graded)
    await desk.record_status(order.id, "resolved", by="wang")
    return desk, order


async def test_the_follow_up_reminder_goes_once_and_the_order_stays_until_recorded(
        fake_clock: FakeClock) -> None:
    config = load_config_text(BASE + "work_orders: {priorities: {P3: {follow_up_within: 2h}}}")
    sent = _Sent()
    desk, order = await _resolved_report(fake_clock, sent, config)
    resolved = sent[-1]
    assert resolved.follow_up_overdue_at is not None and resolved.follow_up_by is not None
    assert parse_instant(resolved.follow_up_overdue_at) - parse_instant(
        resolved.follow_up_by) == 2 * HOUR, "the priority's follow_up_within"
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(desk.run())
        await fake_clock.advance(48 * HOUR - 1)
        assert sent[-1].event == "resolved"
        await fake_clock.advance(2)
        # mypy keeps sent[-1].event narrowed to "resolved" across the await that changed it.
        assert (sent[-1].event == "follow_up_due"  # type: ignore[comparison-overlap]
                and desk.tracks(order.id))
        await fake_clock.advance(4 * 24 * HOUR)
        assert [o.event for o in sent].count("follow_up_due") == 1, "reminded once"
        assert [o.id for o in desk.follow_ups()] == [order.id]
        runner.cancel()
    # A restart after the reminder does not send it again.
    again = _Sent()
    after = WorkOrderDesk(config.site, fake_clock, again, policies=config.work_orders)
    assert after.restore([sent[-1]]) == 1
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(after.run())
        await fake_clock.advance(HOUR)
        assert again == [] and after.tracks(order.id)
        runner.cancel()


async def test_forget_after_still_ends_an_order_nobody_followed_up(
        fake_clock: FakeClock) -> None:
    config = load_config_text(BASE + "work_orders: {forget_after: 3d}")
    sent = _Sent()
    desk, order = await _resolved_report(fake_clock, sent, config)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(desk.run())
        await fake_clock.advance(3 * 24 * HOUR - 10)
        assert desk.tracks(order.id)
        await fake_clock.advance(20)
        assert not desk.tracks(order.id)
        runner.cancel()
    with pytest.raises(WorkOrderActionRefused) as refused:
        await desk.record_follow_up(order.id, by="wang", reached=False)
    assert refused.value.unknown


async def test_a_reopened_order_counts_its_ladder_from_the_reopening_even_after_a_restart(
        fake_clock: FakeClock) -> None:
    config = load_config_text(BASE)
    sent = _Sent()
    desk, order = await _resolved_report(fake_clock, sent, config)
    await fake_clock.advance(50 * HOUR)
    reopened = await desk.record_follow_up(order.id, by="wang", reached=True, satisfied=False,
                                           comment="仍然吵")
    assert (reopened.status, reopened.event, reopened.status_via, reopened.status_by) == (
        "open", "reopened", "console", "wang")
    assert reopened.raised_at == order.raised_at and reopened.reopened_at is not None
    p3 = config.work_orders.priorities["P3"]
    assert reopened.escalation is not None and reopened.escalation.level == 1
    assert parse_instant(reopened.escalation.deadline) - parse_instant(
        reopened.reopened_at) == p3.ladder[0].within
    # Restart in between: the restored desk counts from reopened_at, not raised_at (which
    # is 50 h back and past every step of the P3 ladder).
    await fake_clock.advance(HOUR)
    again = _Sent()
    after = WorkOrderDesk(config.site, fake_clock, again, policies=config.work_orders)
    assert after.restore([reopened]) == 1
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(after.run())
        await fake_clock.advance(p3.ladder[0].within - HOUR - 1)
        assert again == [], "not before the first step's deadline after the reopening"
        await fake_clock.advance(2)
        assert [(o.event, o.escalation.level if o.escalation else 0) for o in again] == [
            ("escalated", 2)]
        runner.cancel()
    # The platform's answer on a reopened order goes the same way as the console's.
    answered = await after.apply_status(order.id, StatusAnswer(status="on_site", by="维修"))
    assert answered is not None and answered.status_via == "platform"
    assert answered.status_by == "维修"


async def test_console_status_follows_the_platforms_order_of_states(
        fake_clock: FakeClock) -> None:
    config = load_config_text(BASE)
    sent = _Sent()
    desk = WorkOrderDesk(config.site, fake_clock, sent, policies=config.work_orders)
    order = await desk.open_report(grade_report(config, category="noise", description="x",
                                                channel="phone", logged_by="wang"))
    await desk.record_status(order.id, "on_site", by="wang")
    with pytest.raises(WorkOrderActionRefused, match="it is on_site; recording acknowledged "
                                                     "needs it open or alarm_cleared"):
        await desk.record_status(order.id, "acknowledged", by="wang")
    ignored = await desk.apply_status(order.id, StatusAnswer(status="acknowledged"))
    assert ignored is not None and ignored.seq == 2, "the platform's late answer is old news"
    with pytest.raises(WorkOrderActionRefused, match="needs a resolved order"):
        await desk.record_follow_up(order.id, by="wang", reached=False)
    assigned = await desk.assign(order.id, by="wang", person="张工")
    assert assigned.status == "on_site" and assigned.assigned_to is not None
    assert assigned.assigned_to.role is None and assigned.assigned_to.person == "张工"


def test_a_follow_up_says_satisfied_exactly_when_it_reached_someone() -> None:
    at = "2026-01-01T08:00:00.000+00:00"
    assert FollowUp(at=at, by="wang", reached=False).satisfied is None
    with pytest.raises(ValidationError, match="whether they were satisfied"):
        FollowUp(at=at, by="wang", reached=True)
    with pytest.raises(ValidationError, match="reached nobody"):
        FollowUp(at=at, by="wang", reached=False, satisfied=True)
    with pytest.raises(ValidationError, match="a role, a person or both"):
        Assignment(by="wang", at=at)


@pytest.mark.mosquitto
async def test_propgw_orders_dispatches_records_and_lists_follow_ups(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    upstream: list[dict[str, Any]] = []
    async with running_site(tmp_path, mosquitto.port, fake_clock, upstream) as site:
        path = users_path(site.config)
        assert path is not None
        with UserStore(path) as store:
            tokens = {name: store.issue_token(name, "cli") for name in ("wang", "li")}
        op = await site.client("wang")
        status, order = await op.post("/api/v1/reports", LEAK)
        assert status == 200
        oid = order["id"]

        async def orders(*argv: str, token: str = tokens["wang"]) -> tuple[int, str]:
            args = _parser().parse_args(["orders", *argv, "--url", site.base,
                                         "--token", token])
            out = io.StringIO()
            return await run_orders_async(args, out), out.getvalue()

        assert (await orders("assign", oid))[0] == 2
        assert "--role, --person or both" in capsys.readouterr().err
        status, out = await orders("assign", oid, "--role", "patrol", "--person", "保安 李")
        assert status == 0 and out.split("  ")[1:4] == ["2", "assigned", "open"], out
        status, out = await orders("on-site", oid, "--note", "已到场", token=tokens["li"])
        assert status == 1 and "operator" in capsys.readouterr().err
        assert (await orders("on-site", oid, "--note", "已到场"))[0] == 0
        status, out = await orders("on-site", oid)
        assert status == 1 and "it is on_site" in capsys.readouterr().err
        status, out = await orders("resolve", oid)
        assert status == 0 and "resolved" in out and out.splitlines()[1].startswith("回访时间 ")
        status, out = await orders("follow-ups", token=tokens["li"])
        assert status == 0 and out.splitlines()[0].split("  ")[1:3] == ["未到", "P1"], out
        assert PHONE not in out and out.rstrip().endswith(oid)
        assert (await orders("follow-up", oid, "--not-reached"))[0] == 0
        status, out = await orders("follow-up", oid, "--unsatisfied", "--comment", "仍漏")
        assert status == 0 and out.split("  ")[2:4] == ["reopened", "open"], out
        assert out.splitlines()[1].startswith("确认时限 ") and out.endswith("· 中控室\n")
        status, out = await orders("follow-ups", "--json")
        assert status == 0 and json.loads(out)["upcoming"] == []
        status, out = await orders("resolve", "nope")
        assert status == 1 and "does not track" in capsys.readouterr().err
        status, spec = await op.get("/api/v1/openapi.json")
        paths = spec["paths"]
        for action in ("assign", "acknowledge", "on-site", "resolve", "follow-up"):
            operation = paths[f"/api/v1/work-orders/{{order_id}}/{action}"]["post"]
            assert operation["tags"] == ["work orders"] and operation["description"], action
        assert "FollowUpBody" in json.dumps(
            paths["/api/v1/work-orders/{order_id}/follow-up"]["post"]["requestBody"])
        assert "FollowUpList" in json.dumps(paths["/api/v1/follow-ups"]["get"]["responses"])
