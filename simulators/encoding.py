"""Register encoding for the simulators, written independently of the gateway's codecs.

The design rule is that simulators meet the gateway only on the wire: if this module and
``drivers/modbus`` shared code, a word-order bug would be the same on both sides and no test
would see it. So this is a deliberately separate, straightforward implementation on ``struct``.
"""

from __future__ import annotations

import struct
from typing import Literal

__all__ = ["FORMATS", "encode", "register_count"]

Order = Literal["big", "little"]

#: type name -> (struct format, registers)
FORMATS: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "float32": ("f", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float64": ("d", 4),
}


def register_count(type_name: str) -> int:
    """How many 16-bit registers a value of ``type_name`` takes."""
    return FORMATS[type_name][1]


def encode(value: float, type_name: str, *, word_order: Order = "big",
           byte_order: Order = "big") -> list[int]:
    """Encode ``value`` as registers as a device would put them on the wire.

    ``byte_order`` is the order of the two bytes inside each register, ``word_order`` the
    order of the registers (big = most significant register first).
    """
    fmt, _ = FORMATS[type_name]
    number: float | int = value if fmt in "fd" else round(value)
    raw = struct.pack(">" + fmt, number)
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]
