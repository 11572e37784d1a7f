"""Reported repairs (报事报修): the catalogue and its grading (units), then through a real gateway on
the fake clock: a phone report logged through the console API is graded, goes upstream over a
real mosquitto as a work order with ``source: report``, and climbs its escalation ladder; the
reporter's phone number stays out of the logs, the alarm journal and every upstream message;
and ``propgw reports add|list`` against the running gateway."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import jsonschema_rs
import pytest

from gateway.alarms import journal_path
from gateway.app import Gateway, outbox_path
from gateway.cli import _parser
from gateway.clock import FakeClock
from gateway.config import (
    DEFAULT_REPORT_CATEGORIES,
    GatewayConfig,
    load_config_text,
    mask_contact,
)
from gateway.console import UserStore, users_path
from gateway.errors import ConfigError
from gateway.i18n import category_title
from gateway.reports_cli import run_reports_async
from gateway.upstream.schema import upstream_schema
from gateway.workorders import (
    ReportRefused,
    WorkOrder,
    WorkOrderDesk,
    grade_report,
    shareable,
    work_order_log_path,
)
from tests.console_support import Client, add_users, logged_in
from tests.gateway_support import advance_delivered, gateway_on_platform, until
from tests.support import Mosquitto

PHONE = "13812345678"
MASKED = "138****5678"

BASE = "site: {id: s1, name: 测试小区, gateway_id: gw1}\n"
DEVICE = """
devices:
  - {id: E1, name: 1号梯, driver: mqtt, broker: devices, kind: elevator,
     location: {building: "1号楼", floor: "3", zone: 东区},
     points: [{name: trapped, topic: dev/E1/trapped, type: int}]}
"""

# --------------------------------------------------------------------------- units


def test_the_built_in_catalogue_grades_reports_and_a_site_overrides_it() -> None:
    config = load_config_text(BASE)
    cats = config.reports.categories
    assert (cats["water_leak"].title.zh, cats["water_leak"].priority) == ("漏水", "P1")
    assert (cats["power_loss"].title.zh, cats["elevator_fault"].title.zh,
            cats["access_fault"].title.zh, cats["noise"].title.zh,
            cats["facility_damage"].title.zh) == ("停电", "电梯故障", "门禁故障", "噪音",
                                                  "公共设施损坏")
    assert cats["elevator_entrapment"].priority == "P0" and cats["noise"].priority == "P3"
    assert config.reports.share_contact is False

    site = load_config_text(BASE + """
reports:
  categories:
    noise: {priority: P2}
    gas_smell: {title: {zh: 燃气味, en: Gas smell}, priority: P0}
    other_repair: {enabled: false}
""")
    cats = site.reports.categories
    assert cats["noise"].priority == "P2" and cats["noise"].title.zh == "噪音", "merged"
    assert site.reports.category("gas_smell") is not None
    assert site.reports.category("other_repair") is None
    assert "other_repair" not in site.reports.enabled()
    # The site's own category has its title wherever categories are named (console, orders).
    assert (category_title("gas_smell", "zh-CN", site), category_title("gas_smell", "en", site)
            ) == ("燃气味", "Gas smell")
    assert category_title("noise", "en", site) == "Noise"


def test_a_catalogue_mistake_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(BASE + "reports: {categories: {Noise: {priority: P2}}}")
    assert "reports.categories" in str(err.value) and "'Noise'" in str(err.value)


def test_reports_take_their_prioritys_windows_whichever_alarms_make_orders() -> None:
    # A site where routine alarms raise no orders still escalates a reported repair.
    config = load_config_text(BASE + """
work_orders:
  create_for: [P0, P1]
  categories:
    water_leak: {work_order: false, on_site_within: 10m}
""")
    assert config.work_orders.policy("noise", "P3") is None
    assert config.work_orders.policy("water_leak", "P1") is None
    p3 = config.work_orders.report_policy("noise", "P3")
    assert p3 == config.work_orders.priorities["P3"]
    leak = config.work_orders.report_policy("water_leak", "P1")
    assert leak.on_site_within == 600.0, "the category's own windows apply"
    assert leak.ladder == config.work_orders.priorities["P1"].ladder


def test_a_contact_is_masked_keeping_what_people_read_back() -> None:
    assert mask_contact(PHONE) == MASKED
    assert mask_contact(" +8613812345678 ") == "+86****5678"
    assert mask_contact("6512345") == "6****45"
    assert mask_contact("110") == "****"


def test_grading_takes_the_category_the_device_and_a_reasoned_override() -> None:
    config = load_config_text(BASE + "brokers: {devices: {host: 127.0.0.1}}\n" + DEVICE)
    graded = grade_report(config, category="elevator_fault", description="按钮失灵",
                          channel="phone", logged_by="wang", device="E1", room="轿厢",
                          reporter="张女士", contact=PHONE)
    assert graded.priority == "P1" and graded.details.priority_override is None
    loc = graded.location
    assert (loc.building, loc.floor, loc.room, loc.device, loc.device_name) == (
        "1号楼", "3", "轿厢", "E1", "1号梯")
    assert graded.title.zh.startswith("电梯故障：1号楼 3层") and graded.title.zh.endswith("1号梯")
    assert graded.details.contact == PHONE and graded.details.operator == "wang"

    with pytest.raises(ReportRefused, match="needs a reason"):
        grade_report(config, category="noise", description="装修", channel="phone",
                     logged_by="wang", priority="P1")
    raised = grade_report(config, category="noise", description="凌晨装修", channel="walk_in",
                          logged_by="wang", building="2号楼", priority="P1",
                          priority_reason="凌晨施工，多户投诉")
    assert raised.priority == "P1" and raised.details.priority_override is not None
    assert raised.details.priority_override.model_dump() == {
        "graded": "P3", "by": "wang", "reason": "凌晨施工，多户投诉"}
    with pytest.raises(ReportRefused, match=r"catalogue has: .*water_leak"):
        grade_report(config, category="leak", description="x", channel="phone",
                     logged_by="wang")
    with pytest.raises(ReportRefused, match="unknown device 'E9'"):
        grade_report(config, category="noise", description="x", channel="phone",
                     logged_by="wang", device="E9")


def report_desk(clock: FakeClock) -> tuple[GatewayConfig, WorkOrderDesk, list[WorkOrder]]:
    """The desk of the BASE site on ``clock``; every version it sends is appended to the
    list."""
    config = load_config_text(BASE)
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    return config, WorkOrderDesk(config.site, clock, sink, policies=config.work_orders), sent


async def test_a_report_climbs_the_same_ladder_as_an_alarm_of_its_priority(
        fake_clock: FakeClock) -> None:
    config, desk, sent = report_desk(fake_clock)
    graded = grade_report(config, category="water_leak", description="天花板滴水",
                          channel="phone", logged_by="wang", building="3号楼", room="1201",
                          contact=PHONE)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(desk.run())
        order = await desk.open_report(graded)
        assert (order.source, order.priority, order.seq, order.status) == ("report", "P1", 1,
                                                                         "open")
        assert order.alarm_id == f"report:{order.id}" and order.rule_id == "report"
        assert order.escalation is not None and order.escalation.role == "control_room"
        p1 = config.work_orders.priorities["P1"]
        await fake_clock.advance(p1.ladder[0].within - 1)
        assert len(sent) == 1, "not before the first step's deadline"
        await fake_clock.advance(2)
        assert [(o.seq, o.event, o.escalation.level if o.escalation else 0)
                for o in sent[1:]] == [(2, "escalated", 2)]
        assert sent[-1].escalation is not None and sent[-1].escalation.role == "patrol"
        await fake_clock.advance(p1.ladder[1].within - p1.ladder[0].within - 2)
        assert len(sent) == 2, "escalated once until the next step is due"
        runner.cancel()
    assert shareable(sent[0], False).report.contact == MASKED  # type: ignore[union-attr]
    assert shareable(sent[0], True).report.contact == PHONE  # type: ignore[union-attr]



async def test_an_idempotency_key_makes_a_retried_report_one_order(
        fake_clock: FakeClock) -> None:
    config, desk, sent = report_desk(fake_clock)
    graded = grade_report(config, category="noise", description="楼上装修噪音",
                          channel="phone", logged_by="wang", building="3号楼")
    first = await desk.open_report(graded, key="call-0815-01")
    again = await desk.open_report(graded, key="call-0815-01")
    other = await desk.open_report(graded, key="call-0815-02")
    plain = [await desk.open_report(graded), await desk.open_report(graded)]
    assert again.id == first.id and again.seq == 1
    assert len({first.id, other.id, *(o.id for o in plain)}) == 4
    assert [o.id for o in sent] == [first.id, other.id, *(o.id for o in plain)], \
        "the retry raised nothing and sent nothing"


# --------------------------------------------------------------------------- a real gateway


SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
console: {{port: 0}}
rules:
  - {{id: trapped, devices: [E1], when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 电梯困人, en: passenger trapped}}}}
""" + DEVICE.replace("{", "{{").replace("}", "}}")


@dataclass
class Site:
    gateway: Gateway
    config: GatewayConfig
    base: str
    clock: FakeClock
    upstream: list[bytes]
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    async def client(self, name: str) -> Client:
        return await logged_in(self.base, self.sessions, name)

    def orders(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.upstream]

    async def advance(self, seconds: float, step: float = 10.0) -> None:
        await advance_delivered(self.gateway, self.clock, seconds, step)

    async def until_orders(self, count: int) -> list[dict[str, Any]]:
        await until(lambda: len(self.upstream) >= count, self.clock)
        return self.orders()


@asynccontextmanager
async def running_site(tmp_path: Path, port: int, clock: FakeClock) -> AsyncIterator[Site]:
    config = load_config_text(SITE.format(state=tmp_path / "state", port=port))
    add_users(config)
    upstream: list[bytes] = []
    async with gateway_on_platform(config, port, clock, topics=["pm/s1/work-orders"],
                                   received=lambda _topic, m: upstream.append(m)) as gateway:
        assert gateway.web is not None
        site = Site(gateway, config, f"http://127.0.0.1:{gateway.web.port}", clock, upstream)
        try:
            yield site
        finally:
            for http in site.sessions:
                await http.close()


@pytest.mark.mosquitto
async def test_a_phone_report_is_graded_goes_upstream_and_escalates_once(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    validator = jsonschema_rs.validator_for(upstream_schema())
    async with running_site(tmp_path, mosquitto.port, fake_clock) as site:
        operator, viewer = await site.client("wang"), await site.client("li")
        status, about = await viewer.get("/api/v1/site")
        assert status == 200 and about["categories"]["noise"] == {"zh": "噪音", "en": "Noise"}, \
            "report categories are titled for the console like alarm categories"
        status, catalogue = await viewer.get("/api/v1/report-categories")
        assert status == 200 and {"id": "water_leak", "priority": "P1",
                                  "title": {"zh": "漏水", "en": "Water leak"}} \
            in catalogue["categories"]
        body = {"category": "water_leak", "description": "楼上漏水，天花板滴水",
                "channel": "phone", "building": "3号楼", "floor": "12", "room": "1201",
                "reporter": "张女士", "contact": PHONE}
        status, answer = await viewer.post("/api/v1/reports", body)
        assert status == 403, "viewers cannot log reports"
        status, answer = await operator.post("/api/v1/reports", body, csrf=False)
        assert status == 403 and "X-CSRF-Token" in answer["error"]
        status, answer = await operator.post("/api/v1/reports", {**body, "priority": "P0"})
        assert status == 400 and "needs a reason" in answer["error"]
        status, answer = await operator.post("/api/v1/reports", {**body, "category": "leak"})
        assert status == 400 and "unknown report category 'leak'" in answer["error"]

        status, order = await operator.post("/api/v1/reports", body,
                                            headers={"Idempotency-Key": "call-1"})
        assert status == 200, order
        status, retried = await operator.post("/api/v1/reports", body,
                                              headers={"Idempotency-Key": "call-1"})
        assert status == 200 and retried["id"] == order["id"], "a retry is the same order"
        assert (order["source"], order["priority"], order["status"]) == ("report", "P1", "open")
        assert order["report"] == {"channel": "phone", "reporter": "张女士", "contact": PHONE,
                                   "operator": "wang", "priority_override": None}
        assert order["title"]["zh"] == "漏水：3号楼 12层 1201室"

        first = (await site.until_orders(1))[0]
        validator.validate(first)
        assert (first["id"], first["seq"], first["source"]) == (order["id"], 1, "report")
        assert first["report"]["contact"] == MASKED and first["report"]["operator"] == "wang"

        # P1's ladder: control room for 5 min, then patrol until 15 min.
        ladder = site.config.work_orders.priorities["P1"].ladder
        await site.advance(ladder[0].within + 1)
        orders = await site.until_orders(2)
        await site.advance(ladder[1].within - ladder[0].within - 10)
        await asyncio.sleep(0.2)  # anything else the desk would send has had time to arrive
        orders = site.orders()
        assert [(o["seq"], o["event"], o["escalation"]["level"]) for o in orders] == [
            (1, "raised", 1), (2, "escalated", 2)], "escalated once, to the patrol"
        validator.validate(orders[1])

        status, listed = await operator.get("/api/v1/reports?scope=open")
        assert status == 200 and [o["id"] for o in listed["orders"]] == [order["id"]]
        assert listed["orders"][0]["report"]["contact"] == PHONE, "operators call back"
        status, one = await operator.get(f"/api/v1/reports/{order['id']}")
        assert status == 200 and [v["seq"] for v in one["versions"]] == [1, 2]
        status, seen = await viewer.get(f"/api/v1/work-orders/{order['id']}")
        assert status == 200 and seen["report"]["contact"] == MASKED
        assert {v["report"]["contact"] for v in seen["versions"]} == {MASKED}
        status, seen = await viewer.get("/api/v1/work-orders")
        assert status == 200 and seen["orders"][0]["report"]["contact"] == MASKED
        assert (await viewer.get("/api/v1/reports"))[0] == 403

        status, raised = await operator.post("/api/v1/reports", {
            "category": "noise", "description": "凌晨施工", "channel": "patrol",
            "priority": "P1", "priority_reason": "多户投诉"})
        assert status == 200 and raised["priority"] == "P1"
        assert raised["report"]["priority_override"] == {"graded": "P3", "by": "wang",
                                                         "reason": "多户投诉"}
        status, recent = await operator.get("/api/v1/reports")
        assert status == 200 and len(recent["orders"]) == 2


@pytest.mark.mosquitto
async def test_a_reporters_phone_stays_out_of_logs_journal_and_upstream(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_site(tmp_path, mosquitto.port, fake_clock) as site:
        # An alarm too, so the journal is not empty and a report next to it would show.
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as dev:
            await dev.publish("dev/E1/trapped", "1", qos=1, retain=True)
        operator = await site.client("wang")
        status, order = await operator.post("/api/v1/reports", {
            "category": "elevator_fault", "description": f"电梯异响，回电 {PHONE[:3]}",
            "device": "E1", "reporter": "李先生", "contact": PHONE})
        assert status == 200
        await site.until_orders(2)  # the alarm's order and the report's
        await site.advance(301)  # and an escalation of each
        await site.until_orders(4)
        upstream = list(site.upstream)
        config = site.config
    assert any(b'"source":"report"' in m for m in upstream)
    assert all(PHONE.encode() not in m for m in upstream), "no upstream message has it"
    assert any(MASKED.encode() in m for m in upstream)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"work order {order['id']} raised from a report" in logged, "logs were captured"
    assert PHONE not in logged and PHONE not in caplog.text

    # On disk: only the work-order history holds it. (The gateway has stopped: no WAL left.)
    history = work_order_log_path(config)
    journal = journal_path(config)
    outbox = outbox_path(config)
    assert history is not None and journal is not None and outbox is not None
    assert journal.is_file() and outbox.is_file() and history.is_file()
    assert b"trapped@E1" in journal.read_bytes(), "the journal holds the alarm"
    holders = sorted(p.name for p in config.state_dir.rglob("*")
                     if p.is_file() and PHONE.encode() in p.read_bytes())
    assert holders == [history.name], holders


@pytest.mark.mosquitto
async def test_propgw_reports_add_and_list_against_a_running_gateway(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    async with running_site(tmp_path, mosquitto.port, fake_clock) as site:
        path = users_path(site.config)
        assert path is not None
        with UserStore(path) as store:
            tokens = {name: store.issue_token(name, "cli") for name in ("wang", "li")}

        async def reports(*argv: str, token: str) -> tuple[int, str]:
            args = _parser().parse_args(["reports", *argv, "--url", site.base,
                                         "--token", token])
            out = io.StringIO()
            return await run_reports_async(args, out), out.getvalue()

        status, out = await reports("categories", token=tokens["li"])
        assert status == 0 and "water_leak  P1  漏水" in out.splitlines()
        status, out = await reports("add", "power_loss", "5号楼整栋停电", "--building", "5号楼",
                                    "--contact", PHONE, "--reporter", "物业前台",
                                    token=tokens["wang"])
        assert status == 0, capsys.readouterr().err
        order_id, priority, title = out.splitlines()[0].split("  ")
        assert (priority, title) == ("P1", "停电：5号楼")
        assert out.splitlines()[1].startswith("到场时限 ") and out.endswith("· 中控室\n")
        status, out = await reports("add", "noise", "装修", "--priority", "P2",
                                    token=tokens["wang"])
        assert status == 2 and "--priority needs --reason" in capsys.readouterr().err
        status, out = await reports("add", "noise", "装修", token=tokens["li"])
        assert status == 1 and "operator" in capsys.readouterr().err

        status, out = await reports("list", "--open", token=tokens["wang"])
        assert status == 0
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].endswith(order_id) and PHONE not in out
        assert lines[0].split("  ")[1:6] == ["P1", "open", "1/4", "停电：5号楼", "phone"]
        status, out = await reports("list", "--json", token=tokens["wang"])
        assert status == 0 and json.loads(out)["orders"][0]["report"]["contact"] == PHONE
        await site.until_orders(1)
    assert mask_contact(PHONE) in site.upstream[0].decode()


async def test_a_reports_order_is_restored_after_a_restart(fake_clock: FakeClock) -> None:
    config = load_config_text(BASE + "work_orders: {create_for: [P0]}")
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    graded = grade_report(config, category="noise", description="夜间噪音", channel="phone",
                          logged_by="wang")
    first = await WorkOrderDesk(config.site, fake_clock, sink,
                                policies=config.work_orders).open_report(graded)
    after = WorkOrderDesk(config.site, fake_clock, sink, policies=config.work_orders)
    assert after.restore([first]) == 1, "P3 raises no alarm orders here, but a report's stays"
    assert after.tracks(first.id)


def test_the_documented_catalogue_loads_and_lists_the_defaults() -> None:
    import re

    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(
        encoding="utf-8")
    section = doc[doc.index("## reports"):doc.index("## console")]
    (example,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    reports = load_config_text(BASE + example).reports
    assert reports.categories["noise"].priority == "P2" and reports.category("gas_smell")
    rows = re.findall(r"^\| `([a-z_]+)` \| (P\d) \| ([^|]+?) \| ([^|]+?) \|$", section,
                      flags=re.M)
    assert {name: (prio, zh, en) for name, prio, zh, en in rows} == {
        name: (c["priority"], c["title"]["zh"], c["title"]["en"])
        for name, c in DEFAULT_REPORT_CATEGORIES.items()}
