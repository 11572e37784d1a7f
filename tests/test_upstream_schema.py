"""The published contract: docs/upstream.schema.json is what the models generate, the
documented examples validate against the models, and the schema says what the versioning
policy says (open to additions for consumers, strict about times)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import BaseModel, ValidationError

import gateway.upstream.schema as schema_module
from gateway.upstream import AlarmMessage, GatewayStatus, TelemetryMessage
from gateway.upstream.schema import render
from gateway.workorders import SCHEMA_VERSION, StatusAnswer, WorkOrder

REPO = Path(__file__).resolve().parents[1]


def test_committed_schema_equals_the_generated_one() -> None:
    committed = (REPO / "docs" / "upstream.schema.json").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/upstream.schema.json is stale: run "
        "`python -m gateway.upstream.schema > docs/upstream.schema.json`")


def test_the_generator_runs_as_a_module() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.upstream.schema"], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=60)
    schema = json.loads(out.stdout)
    assert set(schema["$defs"]) >= {"WorkOrder", "AlarmMessage", "GatewayStatus",
                                    "StatusAnswer", "SlaBreach", "Escalation",
                                    "TelemetryMessage", "TelemetryPoint"}
    assert f"schema_version {SCHEMA_VERSION}" in schema["description"]


def test_every_example_in_the_contract_doc_is_a_valid_message() -> None:
    doc = (REPO / "docs" / "upstream.md").read_text(encoding="utf-8")
    examples = re.findall(r"```json\n(.*?)```", doc, flags=re.S)
    assert len(examples) >= 5
    kinds: dict[str, type[BaseModel]] = {"work_order": WorkOrder, "alarm": AlarmMessage,
                                         "work_order_status": StatusAnswer,
                                         "telemetry": TelemetryMessage}
    seen: set[type[BaseModel]] = set()
    for text in examples:
        data = json.loads(text)
        model = kinds.get(data.get("type", ""), GatewayStatus)
        model.model_validate(data)
        seen.add(model)
    assert seen == {WorkOrder, AlarmMessage, StatusAnswer, GatewayStatus, TelemetryMessage}


def test_payloads_of_version_one_without_the_new_fields_still_validate() -> None:
    # What the first release sent: the additions of this version are all optional.
    old = {"schema_version": 1, "type": "work_order", "id": "x", "seq": 1, "site_id": "s",
           "gateway_id": "g", "alarm_id": "a", "rule_id": "r", "category": "fire_alarm",
           "priority": "P0", "status": "open", "title": {"zh": "火警", "en": "Fire"},
           "description": {"zh": "火警", "en": "Fire"},
           "location": {"site": "s", "device": "d", "device_name": "d"}, "evidence": {},
           "detected_at": "2026-01-01T00:00:00+00:00",
           "raised_at": "2026-01-01T00:00:00+00:00",
           "respond_by": "2026-01-01T00:05:00+00:00",
           "updated_at": "2026-01-01T00:00:00+00:00"}
    order = WorkOrder.model_validate(old)
    assert order.event == "raised" and order.breaches == [] and order.escalation is None


# --- The published schema is the consumer's view: open for additions, strict on times. -----

def _consumer() -> jsonschema_rs.Validator:
    """A platform validating with the committed schema, formats asserted (as it should)."""
    schema = json.loads((REPO / "docs" / "upstream.schema.json").read_text(encoding="utf-8"))
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def _doc_examples() -> dict[str, dict[str, Any]]:
    doc = (REPO / "docs" / "upstream.md").read_text(encoding="utf-8")
    found: dict[str, dict[str, Any]] = {}
    for text in re.findall(r"```json\n(.*?)```", doc, flags=re.S):
        data = json.loads(text)
        found.setdefault(data.get("type", "gateway_status"), data)
    return found


def test_a_version_one_consumer_accepts_fields_and_values_added_later() -> None:
    consumer = _consumer()
    examples = _doc_examples()
    order = copy.deepcopy(examples["work_order"])
    order.update(event="reassigned", status="on_hold", priority="P4",
                 crew={"name": "night shift"}, energy_kwh=12.5)
    order["location"]["elevator_bank"] = "A"
    order["escalation"]["channel"] = "sms"
    order["breaches"] = [{"window": "callback", "due": order["raised_at"],
                          "at": order["raised_at"], "late_by_s": 1.0, "source": "platform"}]
    order["title"]["ja"] = "閉じ込め"
    assert consumer.is_valid(order), list(consumer.iter_errors(order))
    alarm = copy.deepcopy(examples["alarm"])
    alarm.update(state="shelved", transition="escalated_by_ai", severity=3)
    assert consumer.is_valid(alarm), list(consumer.iter_errors(alarm))
    status = {**examples["gateway_status"], "state": "degraded", "version": "2.0"}
    assert consumer.is_valid(status), list(consumer.iter_errors(status))
    telemetry = copy.deepcopy(examples["telemetry"])
    telemetry["points"][0].update(quality="uncertain", reason="recalibrated", min=0)
    telemetry["batch"] = 7
    assert consumer.is_valid(telemetry), list(consumer.iter_errors(telemetry))
    telemetry["points"][0]["received_at"] = "yesterday"
    assert not consumer.is_valid(telemetry)
    with pytest.raises(ValidationError):
        TelemetryMessage.model_validate({**examples["telemetry"], "sent_at": "yesterday"})


@pytest.mark.parametrize("path", [("raised_at",), ("updated_at",), ("acknowledge_by",),
                                  ("escalation", "deadline"), ("breaches", 0, "at")])
@pytest.mark.parametrize("bad", ["yesterday", "2026-01-01", "2026-01-01T08:00:00",
                                 "2026-13-01T08:00:00Z", "8:00 01/01/2026"])
def test_a_version_one_consumer_rejects_a_time_that_is_not_rfc3339(
        path: tuple[str | int, ...], bad: str) -> None:
    order = copy.deepcopy(_doc_examples()["work_order"])
    order["breaches"] = [{"window": "acknowledge", "due": order["raised_at"],
                          "at": order["raised_at"], "late_by_s": 1.0}]
    assert _consumer().is_valid(order)
    target: Any = order
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    assert not _consumer().is_valid(order)
    with pytest.raises(ValidationError):
        WorkOrder.model_validate(order)


def test_an_alarm_time_must_be_rfc3339_too() -> None:
    alarm = {**_doc_examples()["alarm"], "ts": "yesterday"}
    assert not _consumer().is_valid(alarm)
    with pytest.raises(ValidationError):
        AlarmMessage.model_validate(alarm)


def test_the_gateway_itself_builds_only_what_version_one_defines() -> None:
    # Strict models: a typo or an unplanned value is an error in the gateway, not on the wire.
    order = _doc_examples()["work_order"]
    WorkOrder.model_validate(order)
    for change in ({"event": "reassigned"}, {"crew": "x"}, {"priority": "P4"}):
        with pytest.raises(ValidationError):
            WorkOrder.model_validate({**order, **change})
    with pytest.raises(ValidationError):
        GatewayStatus.model_validate({**_doc_examples()["gateway_status"], "version": "2"})


def test_a_status_answer_is_published_as_the_gateway_accepts_it() -> None:
    # Platform → gateway: the gateway is the consumer and refuses what it cannot act on.
    consumer = _consumer()
    answer = _doc_examples()["work_order_status"]
    assert consumer.is_valid(answer)
    StatusAnswer.model_validate(answer)
    for change in ({"status": "closed"}, {"assignee": "x"}, {"at": "yesterday"}):
        assert not consumer.is_valid({**answer, **change}), change
        with pytest.raises(ValidationError):
            StatusAnswer.model_validate({**answer, **change})


def test_every_timestamp_of_every_message_is_a_date_time_in_the_schema() -> None:
    # Walks the schema itself: a time-like property a later model adds without the
    # Timestamp type fails here.
    defs = json.loads(render())["$defs"]
    assert _untyped_times(defs) == []
    broken = copy.deepcopy(defs)
    del broken["WorkOrder"]["properties"]["raised_at"]["format"]
    assert _untyped_times(broken) == ["WorkOrder.raised_at"], "the walk must see a plain str"


def _untyped_times(defs: dict[str, Any]) -> list[str]:
    untyped = []
    for name, body in defs.items():
        for prop, spec in body.get("properties", {}).items():
            timeish = (prop in ("ts", "at", "due", "deadline") or prop.endswith("_at")
                       or (prop.endswith("_by") and prop != "status_by"
                           and not prop.startswith("alarm_reset")))
            variants = spec.get("anyOf", [spec])
            strings = [v for v in variants if v.get("type") == "string"]
            if timeish and strings and any(v.get("format") != "date-time" for v in strings):
                untyped.append(f"{name}.{prop}")
    return untyped


def test_a_message_kind_added_later_passes_and_each_topic_validates_alone() -> None:
    consumer = _consumer()
    assert consumer.is_valid({"schema_version": 1, "type": "telemetry_v9", "points": []})
    # A platform usually validates a topic's payload against that message's own definition.
    schema = json.loads((REPO / "docs" / "upstream.schema.json").read_text(encoding="utf-8"))
    del schema["allOf"]
    alarms = jsonschema_rs.validator_for({**schema, "$ref": "#/$defs/AlarmMessage"},
                                         validate_formats=True)
    alarm = _doc_examples()["alarm"]
    assert alarms.is_valid({**alarm, "added_later": True})
    assert not alarms.is_valid({**alarm, "ts": "yesterday"})
    assert not alarms.is_valid(_doc_examples()["gateway_status"])


def test_a_type_shared_by_both_directions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema_module, "FROM_PLATFORM", frozenset({StatusAnswer, WorkOrder}))
    with pytest.raises(ValueError, match="both directions"):
        schema_module.upstream_schema()
