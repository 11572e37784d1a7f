"""Registers and bits to point values: type, byte/word order, scale and offset, value map.

This is the gateway's own decoder. It must never share code with ``simulators.encoding``: the
tests decode what that independent encoder produced, so an ordering bug cannot hide by being
the same on both sides.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

from gateway.config import ModbusPoint
from gateway.errors import DecodeError
from gateway.model import Value

__all__ = ["decode_point", "decode_raw"]

Order = Literal["big", "little"]
Raw = bool | int | float

#: type -> (struct format, registers); the register count must agree with ModbusPoint.width.
_FORMATS: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "float32": (">f", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float64": (">d", 4),
}


def decode_raw(
    type_name: str,
    data: Sequence[int] | Sequence[bool],
    *,
    bit: int | None = None,
    byte_order: Order = "big",
    word_order: Order = "big",
) -> Raw:
    """Decode the registers (or the one bit) of a point into its raw value.

    Args:
        type_name: A Modbus point type: ``bool``, ``bit``, ``int16`` ... ``float64``.
        data: Exactly the registers of the point (or one bit for ``bool``).
        bit: Bit index for type ``bit``, 0 = least significant bit of the register.
        byte_order: Byte order inside each register as it came off the wire.
        word_order: Register order; ``big`` means the most significant register first.

    Returns:
        ``bool`` for ``bool``/``bit``, ``int`` for integer types, ``float`` for floats.

    Raises:
        ValueError: ``data`` has the wrong length or a register is not 0..65535.
    """
    if type_name == "bool":
        if len(data) != 1:
            raise ValueError(f"bool needs 1 bit, got {len(data)}")
        return bool(data[0])
    if type_name == "bit":
        if bit is None or not 0 <= bit <= 15:
            raise ValueError(f"type 'bit' needs a bit index 0..15, got {bit}")
        (word,) = _ordered_words(data, 1, byte_order, "big")
        return bool((word >> bit) & 1)
    try:
        fmt, width = _FORMATS[type_name]
    except KeyError:
        raise ValueError(f"unknown Modbus type {type_name!r}") from None
    words = _ordered_words(data, width, byte_order, word_order)
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    value: int | float = struct.unpack(fmt, raw)[0]
    return value


def decode_point(point: ModbusPoint, data: Sequence[int] | Sequence[bool], *,
                 device: str) -> Value:
    """Decode one point: raw value, then ``raw * scale + offset``, then the value ``map``.

    Integers stay integers when ``scale == 1`` and ``offset == 0``; booleans are never scaled.
    Map keys are compared as text (``"0"``, ``"2.5"``, ``"true"``); a boolean also matches
    ``"1"``/``"0"``. Values without a map entry pass through.

    Args:
        point: The point's config.
        data: Exactly the point's registers (``point.width`` of them) or its one bit.
        device: Device id, for the error's context.

    Returns:
        The value to put in a GOOD :class:`~gateway.model.Reading`.

    Raises:
        DecodeError: Wrong amount of data, a register out of range, or a float that is NaN or
            infinite (before or after scaling).
    """
    try:
        raw = decode_raw(point.type, data, bit=point.bit, byte_order=point.byte_order,
                         word_order=point.word_order)
    except ValueError as exc:
        raise DecodeError(f"point {point.name}: {exc}", device=device,
                          address=point.address) from exc
    value = _scale(point, raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"point {point.name}: {point.type} is {value} (raw {raw!r})",
                          device=device, address=point.address)
    return _apply_map(point, value)


def _ordered_words(data: Sequence[int] | Sequence[bool], width: int, byte_order: Order,
                   word_order: Order) -> list[int]:
    if len(data) != width:
        raise ValueError(f"needs {width} register(s), got {len(data)}")
    words = [int(w) for w in data]
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register value {w} is not 0..65535")
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if word_order == "little":
        words.reverse()
    return words


def _scale(point: ModbusPoint, raw: Raw) -> Raw:
    if isinstance(raw, bool) or (point.scale == 1 and point.offset == 0):
        return raw
    return raw * point.scale + point.offset


def _apply_map(point: ModbusPoint, value: Raw) -> Value:
    if not point.map:
        return value
    for key in _map_keys(value):
        if key in point.map:
            return point.map[key]
    return value


def _map_keys(value: Raw) -> tuple[str, ...]:
    # Mirrors how the config normalises map keys: YAML `0`, `0.0` and `"0"` are all "0".
    if isinstance(value, bool):
        return ("true", "1") if value else ("false", "0")
    if isinstance(value, float) and value.is_integer():
        return (str(int(value)),)
    return (str(value),)
