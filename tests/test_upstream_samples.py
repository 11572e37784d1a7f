"""docs/upstream-samples.md: a sample of every upstream message kind and every work-order event,
taken from a real run (simulated elevators over Modbus TCP, the real gateway, a real mosquitto,
a stand-in platform answering over MQTT), normalised, and compared with the committed file.

Regenerate after a deliberate change: ``PROPGW_WRITE_SAMPLES=1 .venv/bin/pytest
tests/test_upstream_samples.py``.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, get_args

import aiomqtt
import jsonschema_rs
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.simrun import run_scenario
from gateway.upstream.schema import FROM_PLATFORM, MESSAGES
from gateway.workorders import (
    PLATFORM_STATUSES,
    WorkOrder,
    WorkOrderDesk,
    WorkOrderEvent,
    parse_instant,
)
from simulators.scenario import load_scenario
from tests.support import Mosquitto

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "docs" / "upstream-samples.md"

#: E1 traps a passenger between floors; nobody answers until a pre-alert, the alarm button
#: joins the order, a technician frees the car, the platform resolves it and the follow-up
#: falls due. E2 loses power (a P1 order), which the platform rejects. E1 stops while idle at
#: its floor (the simulator then puts it half a floor off), so its position is the same in
#: every run. Late in the run E3 moves away from its floor with its doors open twice (unintended
#: car movement, a latching rule): its order reads latched when the car stops, active again when
#: it moves, and stays open (nobody resets it in the run).
SCENARIO = """
name: contract-samples
description: every work-order event, for docs/upstream-samples.md
seed: 1
duration: 110s
devices:
  - {id: E1, kind: elevator, name: 1号楼1号梯, traffic: false, location: {building: "1"}}
  - {id: E2, kind: elevator, name: 1号楼2号梯, traffic: false, location: {building: "1"}}
  - {id: E3, kind: elevator, name: 1号楼3号梯, traffic: false, location: {building: "1"}}
timeline:
  - {at: 2s, elevator: E1, do: board}
  - {at: 4s, elevator: E1, do: stop_between_floors}
  - {at: 10s, elevator: E2, do: power, state: cut}
  - {at: 60s, elevator: E1, do: press_alarm}
  - {at: 78s, elevator: E1, do: press_alarm, pressed: false}
  - {at: 86s, elevator: E1, do: recover}
  - {at: 92s, elevator: E3, do: move_with_doors_open}
  - {at: 101s, elevator: E3, do: move_with_doors_open}
gateway:
  detectors: [elevator]
"""

#: Short windows so that every update happens within the run (the defaults take minutes).
OVERRIDES: dict[str, Any] = yaml.safe_load("""
work_orders:
  categories:
    elevator_entrapment:
      ladder:
        - {role: control_room, name: {zh: 中控室, en: Control room}, within: 10s}
        - {role: patrol, name: {zh: 巡逻岗, en: Patrol}, within: 20s}
      on_site_within: 30s
      resolve_within: 90s
      pre_alerts: [40s]
      follow_up_after: 10s
telemetry:
  include: [{devices: [E1], points: [car_position]}]
""")

SPEED = 10.0
TIME = "2026-01-01T08:00:00.000+00:00"


@pytest.mark.slow
async def test_the_samples_document_comes_from_a_real_run(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    captured = await _capture(mosquitto, tmp_path)
    captured += await _at_the_edge(captured)
    schema = json.loads((REPO / "docs" / "upstream.schema.json").read_text(encoding="utf-8"))
    consumer = jsonschema_rs.validator_for(schema, validate_formats=True)
    for topic, payload in captured:
        assert consumer.is_valid(payload), (topic, list(consumer.iter_errors(payload)))
        _model_of(payload).model_validate(payload)
    samples = _samples(captured)
    kinds = {m.__name__ for m in MESSAGES}
    assert set(samples) == kinds, f"no sample of {kinds - set(samples)}: extend SCENARIO"
    assert set(samples["WorkOrder"]) == set(get_args(WorkOrderEvent)), "a work-order event"
    assert set(samples["StatusAnswer"]) == set(PLATFORM_STATUSES)
    assert set(samples["GatewayStatus"]) == {"online", "offline"}
    text = render(samples)
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        assert consumer.is_valid(json.loads(block))
    if os.environ.get("PROPGW_WRITE_SAMPLES"):
        SAMPLES.write_text(text, encoding="utf-8")
    committed = SAMPLES.read_text(encoding="utf-8") if SAMPLES.exists() else ""
    diff = "".join(difflib.unified_diff(committed.splitlines(True), text.splitlines(True),
                                        "docs/upstream-samples.md", "this run", n=2))
    assert not diff, ("docs/upstream-samples.md differs from this run; if the change is "
                      "meant: PROPGW_WRITE_SAMPLES=1 .venv/bin/pytest "
                      f"tests/test_upstream_samples.py\n{diff[:4000]}")


async def _capture(mosquitto: Mosquitto, tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every message on the broker during the run, the platform's answers included."""
    file = tmp_path / "contract-samples.yaml"
    file.write_text(SCENARIO, encoding="utf-8")
    scenario = load_scenario(file)
    captured: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
        await platform.subscribe("propgw/#", qos=1)

        async def listen() -> None:
            async for message in platform.messages:
                assert isinstance(message.payload, bytes)
                topic, payload = str(message.topic), json.loads(message.payload)
                captured.append((topic, payload))
                if payload.get("state") == "offline":
                    return  # a clean stop: the last thing the gateway says
                answer = _answer(payload)
                if answer is not None:
                    await platform.publish(f"{topic}/{payload['id']}/status",
                                           json.dumps(answer), qos=1)

        async with asyncio.timeout(50), asyncio.TaskGroup() as tg:
            tg.create_task(listen(), name="samples.platform")
            run = tg.create_task(run_scenario(
                scenario, speed=SPEED, upstream=("127.0.0.1", mosquitto.port),
                gateway_overrides=OVERRIDES), name="samples.run")
    result = run.result()
    assert result.passed, result.failures
    return captured


async def _at_the_edge(captured: list[tuple[str, dict[str, Any]]]
                       ) -> list[tuple[str, dict[str, Any]]]:
    """The events an operator's actions at the edge make, continuing the entrapment after the
    run: the desk restores its last version (as after a restart) and is driven the way the
    console's API drives it: an unsatisfied follow-up reopens it, it is assigned, recorded on
    site and resolved from the console, and a satisfied follow-up closes it."""
    topic, last = max(((t, p) for t, p in captured
                       if p.get("type") == "work_order" and p["priority"] == "P0"),
                      key=lambda tp: tp[1]["seq"])
    config = load_config_text(yaml.safe_dump({
        "site": {"id": last["site_id"], "name": "samples", "gateway_id": last["gateway_id"]},
        "work_orders": OVERRIDES["work_orders"]}))
    clock = FakeClock(wall_offset=parse_instant(last["updated_at"]) + 1.0)
    sent: list[WorkOrder] = []

    async def sink(order: WorkOrder) -> None:
        sent.append(order)

    desk = WorkOrderDesk(config.site, clock, sink, policies=config.work_orders)
    order_id = last["id"]
    assert desk.restore([WorkOrder.model_validate(last)]) == 1
    await desk.record_follow_up(order_id, by="wang", reached=True, satisfied=False,
                                comment="轿厢仍有异响 / the car still rattles")
    await desk.assign(order_id, by="wang", role="engineering", person="维保 赵六",
                      note="复查导靴 / check the guide shoes")
    for status in ("acknowledged", "on_site", "resolved"):
        await clock.advance(5)
        await desk.record_status(order_id, status, by="wang")
    await desk.record_follow_up(order_id, by="wang", reached=True, satisfied=True)
    assert not desk.tracks(order_id), "a satisfied follow-up closes the order"
    return [(topic, json.loads(o.model_dump_json())) for o in sent]


def _answer(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The stand-in platform: answers late enough for every escalation step to happen."""
    if payload.get("type") != "work_order":
        return None
    base = {"schema_version": 1, "type": "work_order_status"}
    if payload["priority"] == "P1" and payload["event"] == "raised":
        return {**base, "status": "rejected", "by": "中控室 王五",
                "note": "power work announced; no order needed"}
    reply = {"pre_alert": ("acknowledged", "中控室 张三"), "acknowledged": ("on_site", "巡逻岗 李四"),
             "alarm_cleared": ("resolved", "维保 赵六")}.get(payload["event"])
    if reply is None:
        return None
    return {**base, "status": reply[0], "by": reply[1]}


def _model_of(payload: dict[str, Any]) -> type[BaseModel]:
    for model in MESSAGES:
        try:
            model.model_validate(payload)
        except ValidationError:
            continue
        return model
    raise AssertionError(f"no message model takes {payload}")


def _samples(captured: list[tuple[str, dict[str, Any]]]
             ) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """Per message kind, per variant (event, state + transition, status), the first seen;
    P0 before others, so the work-order samples follow one incident where they can."""
    ids: dict[str, str] = {}
    # Number ids in an order that does not depend on which of two topics a broker delivered
    # first: work orders by when they were raised, then alarm incidents.
    for key in ("id", "incident_id"):
        for _, payload in captured:
            if key == "id" and payload.get("type") != "work_order":
                continue
            if isinstance(payload.get(key), str):
                _normalise(payload[key], ids)
    out: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
    ordered = sorted(enumerate(captured), key=lambda p: (str(p[1][1].get("priority", "")), p[0]))
    for _, (topic, payload) in ordered:
        kind = _model_of(payload).__name__
        variant = _variant(payload)
        if variant not in out.setdefault(kind, {}):
            out[kind][variant] = (_topic(topic, ids), _normalise(payload, ids))
    return out


def _variant(payload: dict[str, Any]) -> str:
    if "event" in payload:
        return str(payload["event"])
    if "transition" in payload:
        return f"{payload['state']}: {payload['transition']}"
    for key in ("status", "state"):
        if key in payload:
            return str(payload[key])
    return "message"


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EPOCH_MS = re.compile(r"(?<![0-9])1[5-9][0-9]{11}(?![0-9])")
EPOCH_MS = "1767254400000"  # TIME in milliseconds since the epoch
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _normalise(value: Any, ids: dict[str, str], key: str = "") -> Any:
    """Ids, times and measured lateness vary from run to run: fixed stand-ins for them."""
    if isinstance(value, dict):
        return {k: _normalise(v, ids, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, ids, key) for v in value]
    if key == "late_by_s" and isinstance(value, int | float):
        return 0.0
    if isinstance(value, str):
        if _TIME.fullmatch(value):
            return TIME
        if key == "id":  # a telemetry message's id carries the time in ms
            value = _EPOCH_MS.sub(EPOCH_MS, value)
        return _UUID.sub(lambda m: ids.setdefault(
            m.group(), f"00000000-0000-4000-8000-{len(ids) + 1:012d}"), value)
    return value


def _topic(topic: str, ids: dict[str, str]) -> str:
    return str(_normalise(topic, ids))


_INTRO = """\
# Upstream message samples

<!-- Generated by tests/test_upstream_samples.py; do not edit. Regenerate with
     PROPGW_WRITE_SAMPLES=1 .venv/bin/pytest tests/test_upstream_samples.py -->

One sample of every message kind of the [upstream contract](upstream.md) and of every work-order
`event`, all taken from one real run: three simulated elevators over Modbus TCP, the gateway,
a real MQTT broker, and a stand-in platform answering over MQTT. E1 traps a passenger between
floors; nobody answers until the pre-alert, the in-car alarm button joins the order, a
technician frees the car, the platform resolves the order and the follow-up falls due. E2 loses
power (a P1 order), which the platform rejects. E3 moves away from its floor with its doors open
(unintended car movement, a latching rule), stops, and moves again: its order reads latched,
then active again, and stays open without a reset. After the run, an operator at the edge goes
on with E1's order the way the console does: the follow-up call finds the passenger
unsatisfied, which reopens the order; it is assigned to engineering, recorded on site and
resolved from the console, and a satisfied follow-up closes it. The run shortens the
entrapment's windows
(ladder steps ending 10 s and 20 s after raising, on site 30 s, resolve 90 s, pre-alert at
40 s, follow-up after 10 s); the defaults are in [upstream.md](upstream.md#work-orders).

The test that writes this file fails when a run differs from it, so it shows what the gateway
sends today. Only what varies between runs is replaced: every time by
`2026-01-01T08:00:00.000+00:00`, every UUID by `00000000-0000-4000-8000-00000000000N` (work
orders numbered first, then alarm incidents; one id keeps its number throughout), the time in
a telemetry message's `id` by `1767254400000`, every `late_by_s` by `0.0`. Telemetry is limited
to E1's `car_position` here to keep the file short; a real site sends many points per message. Every sample, raw and
normalised, validates against [upstream.schema.json](upstream.schema.json) with `date-time`
formats asserted.
"""

_HEADINGS = {"WorkOrder": "Work orders (`WorkOrder`), one per `event`",
             "AlarmMessage": "Alarm messages (`AlarmMessage`), one per `state` and `transition`",
             "GatewayStatus": "Gateway status (`GatewayStatus`)",
             "TelemetryMessage": "Telemetry (`TelemetryMessage`)",
             "StatusAnswer": "Status answers from the platform (`StatusAnswer`), one per "
                             "`status`"}


def render(samples: dict[str, dict[str, tuple[str, dict[str, Any]]]]) -> str:
    """The samples document: kinds in contract order, variants in the order they happened."""
    parts = [_INTRO]
    for model in MESSAGES:
        kind = model.__name__
        direction = "platform → gateway" if model in FROM_PLATFORM else "gateway → platform"
        parts.append(f"\n## {_HEADINGS.get(kind, f'`{kind}`')}\n\n{direction}.\n")
        for variant, (topic, payload) in samples.get(kind, {}).items():
            body = json.dumps(payload, indent=2, ensure_ascii=False)
            parts.append(f"\n### {variant}\n\nTopic `{topic}`:\n\n```json\n{body}\n```\n")
    return "".join(parts)
