"""The published contract: docs/upstream.schema.json is what the models generate, and the
documented examples validate against the models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
    kinds = {"work_order": WorkOrder, "alarm": AlarmMessage,
             "work_order_status": StatusAnswer, "telemetry": TelemetryMessage}
    seen = set()
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
