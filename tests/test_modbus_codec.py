"""The register codec decodes what the simulators' independent encoder produced."""

from __future__ import annotations

import ast
import math
import struct
from pathlib import Path

import pytest

from drivers.modbus import decode_point, decode_raw
from gateway.errors import DecodeError
from simulators.encoding import Order, encode
from tests.test_modbus_support import point

NUMERIC: dict[str, list[float]] = {
    "int16": [0, 1, -1, -32768, 32767],
    "uint16": [0, 1, 0x1234, 65535],
    "int32": [0, -1, -(2**31), 2**31 - 1, 0x12345678],
    "uint32": [0, 2**32 - 1, 0x12345678, 65536],
    # float32 values exactly representable, so equality is exact.
    "float32": [0.0, -1.5, 3.25, 1234.5, -2.0**100],
    "int64": [0, -1, -(2**63), 2**63 - 1, 0x0102030405060708],
    "uint64": [0, 2**64 - 1, 0x0102030405060708],
    "float64": [0.0, math.pi, -1e300, 2.0**-1000],
}
ORDERS: list[tuple[Order, Order]] = [("big", "big"), ("big", "little"), ("little", "big"),
                                     ("little", "little")]


@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
@pytest.mark.parametrize("type_name", list(NUMERIC))
def test_numeric_types_in_every_order(type_name: str, word_order: Order,
                                      byte_order: Order) -> None:
    for value in NUMERIC[type_name]:
        regs = encode(value, type_name, word_order=word_order,
                      byte_order=byte_order)
        got = decode_raw(type_name, regs, word_order=word_order,
                         byte_order=byte_order)
        assert got == value, (type_name, word_order, byte_order, regs)
        assert type(got) is (float if type_name.startswith("float") else int)


def test_word_order_is_register_order_not_byte_order() -> None:
    # 0x11223344 as uint32: big = [0x1122, 0x3344]; little word order swaps registers only.
    assert decode_raw("uint32", [0x1122, 0x3344]) == 0x11223344
    assert decode_raw("uint32", [0x3344, 0x1122], word_order="little") == 0x11223344
    assert decode_raw("uint32", [0x2211, 0x4433], byte_order="little") == 0x11223344
    assert decode_raw("uint32", [0x4433, 0x2211], word_order="little",
                      byte_order="little") == 0x11223344


@pytest.mark.parametrize("bit", range(16))
def test_bit_in_register_counts_from_lsb(bit: int) -> None:
    word = 1 << bit
    assert decode_raw("bit", [word], bit=bit) is True
    assert decode_raw("bit", [word ^ 0xFFFF], bit=bit) is False
    swapped = ((word & 0xFF) << 8) | (word >> 8)
    assert decode_raw("bit", [swapped], bit=bit, byte_order="little") is True


def test_bool() -> None:
    assert decode_raw("bool", [True]) is True
    assert decode_raw("bool", [False]) is False


def test_scale_and_offset() -> None:
    assert decode_point(point("v", 0, type="int16"), [0xFFFF], device="d") == -1
    assert type(decode_point(point("v", 0), [7], device="d")) is int
    value = decode_point(point("v", 0, scale=0.1, offset=-40), [655], device="d")
    assert value == pytest.approx(25.5)
    assert type(decode_point(point("v", 0, scale=2.0), [7], device="d")) is float
    # Booleans are never scaled.
    assert decode_point(point("b", 0, function="coil", type="bool", scale=10), [True],
                        device="d") is True


def test_value_map_compares_keys_as_text() -> None:
    p = point("state", 0, map={0: "stopped", 1: "running", "2": "fault"})
    assert decode_point(p, [0], device="d") == "stopped"
    assert decode_point(p, [2], device="d") == "fault"
    assert decode_point(p, [9], device="d") == 9  # unmapped passes through
    scaled = point("s", 0, scale=0.5, map={1: "one", "1.5": "one and a half"})
    assert decode_point(scaled, [2], device="d") == "one"  # 1.0 matches key "1"
    assert decode_point(scaled, [3], device="d") == "one and a half"
    door = point("door", 0, type="bit", bit=3, map={True: "open", 0: "closed"})
    assert decode_point(door, [8], device="d") == "open"
    assert decode_point(door, [0], device="d") == "closed"  # a bool also matches 1/0


@pytest.mark.parametrize(("type_name", "value"), [
    ("float32", math.nan), ("float32", math.inf), ("float64", -math.inf),
    ("float64", math.nan),
])
def test_nan_and_inf_are_decode_errors(type_name: str, value: float) -> None:
    p = point("f", 10, type=type_name)
    with pytest.raises(DecodeError) as err:
        decode_point(p, encode(value, type_name), device="meter-1")
    assert err.value.device == "meter-1"
    assert err.value.address == 10


def test_scaling_into_infinity_is_a_decode_error() -> None:
    huge = struct.unpack(">d", struct.pack(">d", 1e308))[0]
    with pytest.raises(DecodeError):
        decode_point(point("f", 0, type="float64", scale=10), encode(huge, "float64"),
                     device="d")


def test_wrong_register_count_or_range_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_point(point("v", 0, type="uint32"), [1], device="d")
    with pytest.raises(DecodeError):
        decode_point(point("v", 0), [0x10000], device="d")


def test_codec_does_not_import_the_simulators() -> None:
    """Shared code would let an ordering bug hide on both sides of the wire."""
    package = Path(__file__).parents[1] / "drivers" / "modbus"
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "simulators" for n in names), module.name
