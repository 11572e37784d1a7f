"""One line of ``propgw read`` output: where a point comes from, what arrived, what it means."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import ModbusPoint, MqttPoint
from gateway.model import Quality, Value

__all__ = ["PointRow", "after_decoding", "format_value", "printable"]


@dataclass(frozen=True, slots=True)
class PointRow:
    """One point as read.

    Attributes:
        device: The device id (a concrete one for devices whose id is a template).
        point: The point name.
        source: Where it is read: ``holding 12`` or an MQTT topic.
        decoding: How the raw value is decoded: ``float32 words little ×0.1``, ``path a.b``.
        raw: The raw registers, bits or field as received; empty when nothing arrived.
        value: The decoded value (None unless good).
        quality: good, bad or comm-loss.
        unit: The point's unit, or empty.
        error: Why the point is not good.
    """

    device: str
    point: str
    source: str
    decoding: str
    raw: str
    value: Value
    quality: Quality
    unit: str = ""
    error: str | None = None


def after_decoding(point: ModbusPoint | MqttPoint) -> list[str]:
    """What the point does to a decoded value (scale, offset, value map), as the ``decoding``
    column shows it after the protocol's own part."""
    parts: list[str] = []
    if point.scale != 1:
        parts.append(f"×{point.scale:g}")
    if point.offset:
        parts.append(f"{point.offset:+g}")
    if point.map:
        parts.append("map")
    return parts


def format_value(value: Value) -> str:
    """A value as an engineer reads it: ``true``, ``229.6``, ``"open"`` (text is quoted)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value) if value == "" else f'"{value}"'
    return str(value)


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with control characters escaped (a device's payload or a config name must not
    drive the terminal), cut to ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
