"""The value forms docs/points.md promises, pinned where the code's behaviour was not obvious.

Each test names the statement it holds the docs to; the decoders are the gateway's own
(drivers/modbus/_codec.py, drivers/mqtt/_payload.py), the comparison the alarm engine's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from drivers.modbus import decode_point
from drivers.mqtt import Payload, PointDecoder
from gateway.alarms._conditions import Context, compile_condition
from gateway.config import ModbusPoint, MqttPoint, PointCondition, load_config_text
from gateway.errors import ConfigError, DecodeError
from gateway.model import Quality, Reading, Value


def mqtt(payload: bytes, **point: Any) -> Value:
    decoder = PointDecoder(MqttPoint.model_validate({"name": "p", "topic": "t", **point}))
    return decoder.decode(Payload(payload), device="d").value


def mqtt_reason(payload: bytes, **point: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        mqtt(payload, **point)
    return str(caught.value.args[0])


def modbus(registers: list[int] | list[bool], **point: Any) -> Value:
    return decode_point(ModbusPoint.model_validate({"name": "p", "address": 0, **point}),
                        registers, device="d")


# --------------------------------------------------------------------------- MQTT type: string


def test_string_turns_a_json_number_into_its_text_as_sent() -> None:
    """Docs: a JSON number becomes its text: 3 → '3', 3.0 → '3.0', 2.5 → '2.5'."""
    assert mqtt(b'{"v": 3}', path="v", type="string") == "3"
    assert mqtt(b'{"v": 3.0}', path="v", type="string") == "3.0"
    assert mqtt(b'{"v": 2.5}', path="v", type="string") == "2.5"
    assert mqtt(b'{"v": true}', path="v", type="string") == "true"


def test_a_map_sees_the_received_value_before_the_type() -> None:
    """Docs: {3: three} matches a JSON 3 and 3.0, also with type: string."""
    assert mqtt(b'{"v": 3.0}', path="v", type="string", map={3: "three"}) == "three"
    assert mqtt(b'{"v": 3}', path="v", type="string", map={3: "three"}) == "three"


@pytest.mark.parametrize("point_type", ["auto", "string", "number", "int", "bool"])
def test_null_and_missing_fields_are_bad_readings_for_every_type(point_type: str) -> None:
    """Docs: null, a missing field, a list or an object is a bad reading, whatever the type."""
    assert mqtt_reason(b'{"v": null}', path="v", type=point_type) == \
        "field 'v' is null, not a single value"
    assert mqtt_reason(b'{"w": 1}', path="v", type=point_type) == "field 'v' is missing"
    assert mqtt_reason(b'{"v": [1]}', path="v", type=point_type) == \
        "field 'v' is a list, not a single value"


def test_a_plain_null_payload_is_text_only_for_type_string() -> None:
    """Docs: a plain payload null is a bad reading, except with type: string (the text 'null')."""
    assert mqtt(b"null", type="string") == "null"
    assert mqtt_reason(b"null", type="auto") == "payload is null"


def test_bool_accepts_true_false_1_0_on_off_in_any_case_and_nothing_else() -> None:
    assert [mqtt(v, type="bool") for v in (b"TRUE", b"0", b"On", b"off")] == \
        [True, False, True, False]
    assert mqtt(b'{"v": 1}', path="v", type="bool") is True
    assert "expected true/false, 1/0 or on/off, got 2" in mqtt_reason(b'{"v": 2}', path="v",
                                                                      type="bool")


def test_mqtt_integers_keep_integer_scaling() -> None:
    """Docs: an integer times a whole scale plus a whole offset stays an integer."""
    assert mqtt(b'{"v": 3}', path="v", scale=2) == 6
    assert type(mqtt(b'{"v": 3}', path="v", scale=2)) is int
    assert mqtt(b'{"v": 3}', path="v", scale=0.5) == 1.5


# --------------------------------------------------------------------------- Modbus


def test_a_bit_reads_true_or_false_and_maps_by_1_or_true() -> None:
    """Docs: type: bit reads true/false; map keys 1 and true (0 and false) both match."""
    assert modbus([0b100], type="bit", bit=2) is True
    assert modbus([0b100], type="bit", bit=1) is False
    assert modbus([0b100], type="bit", bit=2, map={1: "on"}) == "on"
    assert modbus([0b100], type="bit", bit=2, map={True: "on"}) == "on"
    assert modbus([0], type="bit", bit=2, map={0: "off"}) == "off"


def test_modbus_scale_or_offset_makes_a_float() -> None:
    """Docs: with scale or offset set, integer types give a float (10.0); map keys still match 10."""
    assert modbus([5]) == 5 and type(modbus([5])) is int
    assert modbus([5], scale=2) == 10.0 and type(modbus([5], scale=2)) is float
    assert type(modbus([5], offset=1)) is float
    assert modbus([5], scale=2, map={10: "ten"}) == "ten"
    assert modbus([True], function="coil", type="bool", scale=10) is True, "never scaled"


def test_word_order_and_signedness() -> None:
    assert modbus([0xFFFF], type="int16") == -1
    assert modbus([0xFFFF], type="uint16") == 65535
    assert modbus([0x0001, 0x0000], type="uint32") == 65536
    assert modbus([0x0001, 0x0000], type="uint32", word_order="little") == 1
    assert modbus([0x0100], byte_order="little") == 1
    with pytest.raises(DecodeError, match="float32 is nan"):
        modbus([0x7FC0, 0x0000], type="float32")


# --------------------------------------------------------------------------- rules compare


@pytest.mark.parametrize(("value", "condition", "expected"), [
    (True, {"eq": 1}, True),     # eq: 1 matches a bit that reads true
    (1, {"eq": True}, True),     # and eq: true a register that reads 1
    (3, {"eq": "3"}, True),      # text against a number compares the texts
    (3.0, {"eq": "3"}, False),   # ... "3.0" is not "3"
    (3.0, {"eq": 3}, True),      # numbers compare as numbers
    ("on", {"in": ["on", "yes"]}, True),
])
def test_how_a_rule_compares_a_value(value: Value, condition: dict[str, Any],
                                     expected: bool) -> None:
    node = compile_condition(PointCondition.model_validate({"point": "p", **condition}))
    reading = Reading("d", "p", value, Quality.GOOD, 0.0)
    ctx = Context(values={"p": reading}, last_good={}, mono=0.0, wall=0.0, tz=dt.UTC)
    assert node.evaluate(ctx) is expected


# --------------------------------------------------------------------------- log_level


def test_log_level_is_one_of_four_upper_case_names() -> None:
    site = "site: {id: s, name: n, gateway_id: g}\n"
    assert load_config_text(site).log_level == "INFO"
    assert load_config_text(site + "log_level: DEBUG\n").log_level == "DEBUG"
    with pytest.raises(ConfigError) as caught:
        load_config_text(site + "log_level: debug\n")
    assert "log_level (line 2): input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in \
        str(caught.value.problems[0])
