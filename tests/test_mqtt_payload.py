"""Payload decoding: JSON field paths, plain payloads, types, scaling, value maps, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.mqtt import Payload, PointDecoder, _payload, compile_path
from gateway.config import MqttPoint
from gateway.errors import DecodeError


def decode(payload: bytes | str, **point: Any) -> Any:
    return decoder(**point).decode(Payload(payload), device="dev-1").value


def decoder(**point: Any) -> PointDecoder:
    return PointDecoder(MqttPoint.model_validate({"name": "p", "topic": "t", **point}),
                        tz=ZoneInfo("Asia/Shanghai"))


def reason(payload: bytes | str, **point: Any) -> str:
    with pytest.raises(DecodeError) as info:
        decode(payload, **point)
    assert info.value.device == "dev-1"
    return str(info.value.args[0])


# --------------------------------------------------------------------------- field paths


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("status", ("status",)),
        ("status.door", ("status", "door")),
        ("zones[2].state", ("zones", 2, "state")),
        ("a.b[0].c", ("a", "b", 0, "c")),
        ("m[1][0]", ("m", 1, 0)),
        ("[0].v", (0, "v")),
        ("list[-1]", ("list", -1)),
    ],
)
def test_compile_path(path: str, steps: tuple[Any, ...]) -> None:
    assert compile_path(path) == steps


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a[x]", "a[1", "a]", "a.[0]",
                                  "a[0]b"])
def test_compile_path_rejects_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError, match="bad field path"):
        compile_path(path)


def test_json_paths_walk_objects_and_lists() -> None:
    doc = b'{"status": {"door": "OPEN", "temp": 21.5}, "zones": [{"state": 0}, {"state": 1},' \
          b' {"state": 2}], "a": {"b": [{"c": true}]}}'
    assert decode(doc, path="status.door") == "OPEN"
    assert decode(doc, path="status.temp") == 21.5
    assert decode(doc, path="zones[2].state") == 2
    assert decode(doc, path="zones[-1].state") == 2
    assert decode(doc, path="a.b[0].c") is True


def test_one_payload_is_parsed_once_for_all_its_points() -> None:
    payload = Payload(b'{"a": 1, "b": "x"}')
    assert decoder(path="a").decode(payload, device="d").value == 1
    assert payload.document() is payload.document()
    assert decoder(path="b").decode(payload, device="d").value == "x"


@pytest.mark.parametrize(
    ("payload", "path", "expected"),
    [
        (b'{"status": {}}', "status.door", "field 'status.door' is missing"),
        (b'{"x": 1}', "status.door", "field 'status' is missing"),
        (b'{"zones": [1]}', "zones[2]", "zones[2] is out of range (length 1)"),
        (b'{"zones": {"2": 1}}', "zones[2]", "zones is an object, not a list"),
        (b'[1, 2]', "a", "the payload is a list, not an object"),
        (b'{"a": {"b": 1}}', "a", "field 'a' is an object, not a single value"),
        (b'{"a": null}', "a", "field 'a' is null, not a single value"),
        (b'{"a": 1', "a", "payload is not JSON"),
        (b"OPEN", "a", "payload is not JSON"),
        (b'{"a": NaN}', "a", "NaN, which is not a JSON number"),
        (b"\xff\xfe", "a", "payload is not UTF-8 text"),
        (b"[" * 100_000, "a", "nested too deeply"),
    ],
)
def test_malformed_json_gives_a_short_reason(payload: bytes, path: str, expected: str) -> None:
    assert expected in reason(payload, path=path)


# --------------------------------------------------------------------------- plain payloads


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"42", 42),
        (b" -7\n", -7),
        (b"21.5", 21.5),
        (b"1e3", 1000.0),
        (b"true", True),
        (b"FALSE", False),
        (b"OPEN", "OPEN"),
        (b'"quoted text"', "quoted text"),
        (b"nan", "nan"),
        (b"1e999", "1e999"),
        ("门禁打开".encode(), "门禁打开"),
    ],
)
def test_plain_payloads_in_auto_mode(payload: bytes, expected: Any) -> None:
    value = decode(payload)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"", "payload is empty"), (b"  ", "payload is empty"), (b"null", "payload is null"),
     (b'{"a": 1}', "set 'path'"), (b"[1, 2]", "set 'path'")],
)
def test_unusable_plain_payloads(payload: bytes, expected: str) -> None:
    assert expected in reason(payload)


def test_string_type_keeps_plain_text_as_sent() -> None:
    assert decode(b"007", type="string") == "007"
    assert decode(b"true", type="string") == "true"
    assert decode(b'{"a": 1}', type="string") == '{"a": 1}'
    assert decode(b'{"v": 1.5}', path="v", type="string") == "1.5"
    assert decode(b'{"v": false}', path="v", type="string") == "false"


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("payload", "type_", "expected"),
    [
        (b"12.5", "number", 12.5),
        (b'"12.5"', "number", 12.5),
        (b"3", "number", 3),
        (b"3", "int", 3),
        (b"3.0", "int", 3),
        (b'" 4 "', "int", 4),
        (b"1", "bool", True),
        (b"0", "bool", False),
        (b"on", "bool", True),
        (b"OFF", "bool", False),
        (b"True", "bool", True),
    ],
)
def test_type_coercion(payload: bytes, type_: str, expected: Any) -> None:
    value = decode(payload, type=type_)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("payload", "type_", "expected"),
    [
        (b"abc", "number", "expected a number, got 'abc'"),
        (b"true", "number", "expected a number, got true"),
        (b"2.5", "int", "expected an integer, got 2.5"),
        (b"OPEN", "bool", "expected true/false, 1/0 or on/off, got 'OPEN'"),
        (b"2", "bool", "expected true/false, 1/0 or on/off, got 2"),
    ],
)
def test_type_mismatch_is_a_decode_error(payload: bytes, type_: str, expected: str) -> None:
    assert expected in reason(payload, type=type_)


def test_json_types_are_coerced_too() -> None:
    doc = b'{"on": true, "n": "17", "f": 0}'
    assert decode(doc, path="on", type="bool") is True
    assert decode(doc, path="n", type="int") == 17
    assert decode(doc, path="f", type="bool") is False


# --------------------------------------------------------------------------- scale and map


def test_scale_and_offset() -> None:
    assert decode(b"215", type="number", scale=0.1) == pytest.approx(21.5)
    assert decode(b"100", scale=0.5, offset=-10) == 40.0
    value = decode(b"7", type="int", scale=2, offset=1)
    assert value == 15
    assert type(value) is int
    assert decode(b"true", scale=10) is True  # booleans are not numbers


def test_scaling_to_infinity_is_refused() -> None:
    assert "not a finite number" in reason(b"1e308", scale=1e10)


def test_value_map_open_to_true_even_for_bool_type() -> None:
    mapping = {"OPEN": True, "CLOSED": False}
    assert decode(b"OPEN", map=mapping) is True
    assert decode(b"CLOSED", map=mapping, type="bool") is False
    assert decode(b'{"door": "OPEN"}', path="door", map=mapping, type="bool") is True
    assert decode(b"AJAR", map=mapping) == "AJAR"  # unmapped values pass through
    assert "got 'AJAR'" in reason(b"AJAR", map=mapping, type="bool")


def test_value_map_keys_are_compared_as_text() -> None:
    # YAML `{0: stopped, 1: running}` arrives as text keys; JSON booleans are "true"/"false".
    assert decode(b"1", map={0: "stopped", 1: "running"}) == "running"
    assert decode(b"1.0", type="number", map={"1": "running"}) == "running"
    assert decode(b'{"alarm": true}', path="alarm", map={"true": "fire", "false": "normal"}) \
        == "fire"
    assert decode(b'{"alarm": false}', path="alarm", map={True: "fire", False: "normal"}) \
        == "normal"


def test_map_applies_to_the_scaled_value_too() -> None:
    assert decode(b"10", scale=0.1, map={"1": "on"}) == "on"


# --------------------------------------------------------------------------- timestamps


def ts(payload: bytes) -> float | None:
    return decoder(path="v", timestamp_path="ts").decode(Payload(payload), device="d").source_ts


def test_timestamps_in_seconds_milliseconds_and_iso() -> None:
    assert ts(b'{"v": 1, "ts": 1767225600}') == 1767225600.0
    assert ts(b'{"v": 1, "ts": 1767225600123}') == pytest.approx(1767225600.123)
    assert ts(b'{"v": 1, "ts": "1767225600.5"}') == 1767225600.5
    assert ts(b'{"v": 1, "ts": "2026-01-01T00:00:00Z"}') == \
        datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert ts(b'{"v": 1, "ts": "2026-01-01T08:00:00+08:00"}') == \
        datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_iso_timestamp_without_offset_is_site_local_time() -> None:
    assert ts(b'{"v": 1, "ts": "2026-01-01 08:00:00"}') == \
        datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_no_timestamp_path_means_no_source_ts() -> None:
    assert decoder(path="v").decode(Payload(b'{"v": 1, "ts": 5}'), device="d").source_ts is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"v": 1, "ts": "yesterday"}', "timestamp 'yesterday' at 'ts' is not"),
        (b'{"v": 1, "ts": true}', "timestamp true at 'ts' is not"),
        (b'{"v": 1}', "field 'ts' is missing"),
    ],
)
def test_bad_timestamps(payload: bytes, expected: str) -> None:
    with pytest.raises(DecodeError, match=expected):
        ts(payload)


def test_config_mistakes_are_found_when_the_decoder_is_built() -> None:
    with pytest.raises(ValueError, match="timestamp_path needs a JSON payload"):
        decoder(timestamp_path="ts")
    with pytest.raises(ValueError, match="bad field path"):
        decoder(path="a..b")


# --------------------------------------------------------------------------- the short cut


def _outcome(payload: str, **point: Any) -> tuple[str, Any]:
    try:
        value = decoder(**point).decode(Payload(payload), device="dev-1").value
    except DecodeError as exc:
        return "error", str(exc.args[0])
    return type(value).__name__, value


@pytest.mark.parametrize("type_", ["auto", "number", "int", "bool", "string"])
@pytest.mark.parametrize("field", [
    "1", "-7", "1.5", "3.0", "-0.0", "1e308", "true", "false", '"7"', '"on"', '"abc"', "null",
    "[1]", '{"a": 1}', "1" * 400,
])
def test_one_field_without_map_or_scale_decodes_as_the_general_steps_do(
        type_: str, field: str) -> None:
    # A point reading one field, unmapped and unscaled, takes a short cut for the JSON types
    # its type keeps as they are; a map that matches nothing forces the general steps.
    payload = f'{{"v": {field}, "ts": 1767225600}}'
    fast = _outcome(payload, path="v", type=type_)
    general = _outcome(payload, path="v", type=type_, map={"no such value": 0})
    assert fast == general
    missing = _outcome('{"w": 1}', path="v", type=type_)
    assert missing == ("error", "field 'v' is missing")


# --------------------------------------------------------------------------- the C decoder


def _document(raw: bytes, monkeypatch: pytest.MonkeyPatch, *, fast: bool) -> Any:
    """What ``Payload.document`` gives (or the reason it refuses), with or without orjson."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(_payload, "_orjson", lambda: None)
        try:
            document = Payload(raw).document()
        except Exception as exc:  # compared between the two decoders
            return ("error", type(exc).__name__, str(exc))
    return ("ok", document, _types(document))


def _types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _types(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_types(v) for v in node]
    return type(node).__name__


@pytest.mark.parametrize("raw", [
    b'{"ts": 1767225600.123, "temp": 21.5, "hum": 43, "seq": 7, "sent_us": 1767225600123456}',
    b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 18446744073709551615}',
    b'{"big": 18446744073709551616}',  # beyond 64 bits: orjson would make it a float
    b'{"n": {"deep": [1, -9223372036854775809]}}',
    b'[123456789012345678901234567890]',
    b'{"f": 1e19, "g": -1.5e300}',  # real floats that large: decoded by json, equal anyway
    b'{"a": 1e400}', b'{"a": -1e400}', b'{"a": NaN}', b'{"a": Infinity}',
    b'{"a": ' + b"9" * 400 + b"}",  # an integer beyond float range
    b'{"a": 1, "a": 2}', b'{"s": "\\u00e9\\ud83d\\ude00 \\u95e8"}', b'{"s": "\\ud800"}',
    "{\"s\": \"门禁\"}".encode(), b"\xef\xbb\xbf{}", b'{"a": -0, "b": -0.0, "c": 5e-324}',
    b'{"a": 1', b"OPEN", b"\xff\xfe", b'{"a": 01}', b'[1, 2,]', b'{"a": "\t"}',
    b"[" * 1100 + b"]" * 1100,  # deeper than orjson goes
    b"[" * 100_000, b"", b"  ", b'"text"', b"42", b"null",
])
def test_orjson_and_json_decode_every_payload_alike(raw: bytes,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Same values, same types, same refusals with the same reasons, whichever decodes."""
    assert _payload._orjson() is not None, "orjson is a dependency: installed here"
    assert _document(raw, monkeypatch, fast=True) == _document(raw, monkeypatch, fast=False)


def test_integers_beyond_64_bits_stay_integers() -> None:
    document = Payload(b'{"big": 18446744073709551616, "n": [-9223372036854775809]}').document()
    assert document == {"big": 18446744073709551616, "n": [-9223372036854775809]}
    assert type(document["big"]) is int
