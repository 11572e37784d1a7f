"""Prints the JSON Schema of every upstream message: ``python -m gateway.upstream.schema``.

``docs/upstream.schema.json`` is this output, committed; a test keeps the two equal, so the
published contract cannot drift from the pydantic models that produce the messages.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.upstream._contract import AlarmMessage, GatewayStatus
from gateway.upstream._telemetry import TelemetryMessage
from gateway.workorders import SCHEMA_VERSION, StatusAnswer, WorkOrder

__all__ = ["MESSAGES", "main", "upstream_schema"]

#: Every message of the contract, gateway → platform first.
MESSAGES: tuple[type[BaseModel], ...] = (WorkOrder, AlarmMessage, GatewayStatus, TelemetryMessage,
                                         StatusAnswer)


def upstream_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the upstream contract, one ``$defs`` entry per
    message and the types they share."""
    _, schema = models_json_schema([(m, "validation") for m in MESSAGES],
                                   ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "propgw upstream messages",
        "description": (
            f"schema_version {SCHEMA_VERSION}. Gateway to platform: WorkOrder "
            "(<prefix>/<site>/work-orders, HTTP POST to upstream.http.url), AlarmMessage "
            "(<prefix>/<site>/alarms), GatewayStatus (<prefix>/<site>/gateway/status, "
            "retained), TelemetryMessage (<prefix>/<site>/telemetry/<device>). "
            "Platform to gateway: StatusAnswer (<prefix>/<site>/work-orders/<id>/"
            "status, or POST /api/v1/work-orders/<id>/status). See docs/upstream.md."),
        "anyOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in MESSAGES],
        "$defs": schema["$defs"],
    }


def render() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(upstream_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write the schema to standard output."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
