"""Prints the JSON Schema of every upstream message: ``python -m gateway.upstream.schema``.

``docs/upstream.schema.json`` is this output, committed; a test keeps the two equal, so the
published contract cannot drift from the pydantic models that produce the messages.

The published schema is the *consumer's* view of version 1. The gateway's models are strict
(no unknown fields, closed enumerations) so the gateway never sends what it did not mean to;
the schema of every message the gateway sends is open instead: objects admit fields added
later and every enumeration also admits values added later, as the versioning policy in
``docs/upstream.md`` promises. A consumer validating with this file keeps working when a newer
gateway adds a field or a value. Messages the gateway receives (:data:`FROM_PLATFORM`) are
published as the gateway accepts them: closed.
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

__all__ = ["FROM_PLATFORM", "MESSAGES", "main", "upstream_schema"]

#: Every message of the contract, gateway → platform first.
MESSAGES: tuple[type[BaseModel], ...] = (WorkOrder, AlarmMessage, GatewayStatus, TelemetryMessage,
                                         StatusAnswer)

#: The messages the platform sends and the gateway validates; all others go to the platform.
FROM_PLATFORM: frozenset[type[BaseModel]] = frozenset({StatusAnswer})

#: Said of every enumeration of a gateway → platform message in the published schema.
OPEN_ENUM = ("Known values of version 1; a later gateway may add values without changing "
             "schema_version (see docs/upstream.md#versioning).")


def upstream_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the upstream contract, one ``$defs`` entry per
    message and the types they share; the gateway → platform ones opened for consumers."""
    _, schema = models_json_schema([(m, "validation") for m in MESSAGES],
                                   ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema["$defs"]
    closed = _reachable({m.__name__ for m in FROM_PLATFORM}, defs)
    opened = _reachable({m.__name__ for m in MESSAGES if m not in FROM_PLATFORM}, defs)
    if shared := sorted(closed & opened):
        raise ValueError(f"types {shared} are used by messages of both directions: the "
                         f"published schema cannot be open and closed at once")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "propgw upstream messages",
        "description": (
            f"schema_version {SCHEMA_VERSION}. Gateway to platform: WorkOrder "
            "(<prefix>/<site>/work-orders, HTTP POST to upstream.http.url), AlarmMessage "
            "(<prefix>/<site>/alarms), GatewayStatus (<prefix>/<site>/gateway/status, "
            "retained), TelemetryMessage (<prefix>/<site>/telemetry/<device>); these are open: "
            "consumers must accept and ignore fields and enumeration values they do not "
            "know. Platform to gateway: StatusAnswer (<prefix>/<site>/work-orders/<id>/"
            "status, or POST /api/v1/work-orders/<id>/status), closed. Timestamps are RFC "
            "3339 (format date-time; enable format assertion in your validator). See "
            "docs/upstream.md."),
        "allOf": _dispatch([m.__name__ for m in MESSAGES], defs),
        "$defs": {name: _open(body) if name in opened else body
                  for name, body in defs.items()},
    }


def render() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(upstream_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write the schema to standard output."""
    sys.stdout.write(render())
    return 0


def _dispatch(names: list[str], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """Which message a document is, by its ``type`` (a message without one: by its absence).

    A plain ``anyOf`` of open messages would let a broken message pass as another one (an
    alarm with a bad ``ts`` is a fine open GatewayStatus); a ``type`` this version does not
    know is a message added later, which consumers ignore, so nothing is required of it.
    """
    typed: list[dict[str, Any]] = []
    untyped: list[dict[str, Any]] = []
    for name in names:
        const = defs[name].get("properties", {}).get("type", {}).get("const")
        ref = {"$ref": f"#/$defs/{name}"}
        if const is None:
            untyped.append(ref)
        else:
            typed.append({"if": {"properties": {"type": {"const": const}},
                                 "required": ["type"]}, "then": ref})
    if untyped:
        typed.append({"if": {"not": {"required": ["type"]}}, "then": {"anyOf": untyped}})
    return typed


def _reachable(roots: set[str], defs: dict[str, Any]) -> set[str]:
    """The ``$defs`` names ``roots`` use, directly or through each other."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_refs(defs[name]))
    return seen


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _open(node: Any) -> Any:
    """``node`` as a consumer of version 1 must read it: objects take unknown fields (maps
    such as ``evidence`` keep their value schema) and enumerations take unknown strings."""
    if isinstance(node, list):
        return [_open(value) for value in node]
    if not isinstance(node, dict):
        return node
    out = {key: _open(value) for key, value in node.items()}
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]
    if "enum" in out:
        if "anyOf" in out:
            raise ValueError(f"cannot open an enumeration that has anyOf already: {out}")
        known = out.pop("enum")
        kind = out.pop("type", "string")
        out["anyOf"] = [{"enum": known, "description": OPEN_ENUM}, {"type": kind}]
    return out


if __name__ == "__main__":
    sys.exit(main())
