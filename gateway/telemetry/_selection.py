"""Which points telemetry reports, and with which policy: ``include``, ``exclude`` and
``overrides`` of the ``telemetry:`` section applied to one concrete point."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.config import (
    DerivedPoint,
    DeviceConfig,
    ModbusPoint,
    MqttPoint,
    PointSelector,
    ReportPolicy,
    TelemetryConfig,
)
from gateway.devices import DeviceDirectory
from gateway.model import PointKey

__all__ = ["PointSpec", "Selection"]

_CACHE_MAX = 100_000
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True, slots=True)
class PointSpec:
    """A selected point: its policy, unit and device (for the message's kind and location)."""

    policy: ReportPolicy
    unit: str | None
    device: DeviceConfig


class Selection:
    """Resolves (device, point) to its :class:`PointSpec`, or None when not reported.

    Readings of devices that are not in the config (or are disabled) are never reported. A
    device pattern is matched against the id a reading carries; a templated id in a pattern
    (``door-{door}``) matches every id it expands to.
    Answers are cached; the cache is bounded (cleared when full).
    """

    def __init__(self, cfg: TelemetryConfig, devices: Sequence[DeviceConfig]) -> None:
        self._cfg = cfg
        self._directory = DeviceDirectory(devices)
        self._cache: dict[PointKey, PointSpec | None] = {}

    def spec(self, device_id: str, point: str) -> PointSpec | None:
        key = PointKey(device_id, point)
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        found = self._cache[key] = self._resolve(device_id, point)
        return found

    def _resolve(self, device_id: str, point: str) -> PointSpec | None:
        device = self._directory.get(device_id)
        if device is None or point not in device.point_names():
            return None
        if not any(_matches(sel, device_id, device.kind, point) for sel in self._cfg.include):
            return None
        if any(_matches(sel, device_id, device.kind, point) for sel in self._cfg.exclude):
            return None
        fields = self._cfg.defaults.model_dump()
        for override in self._cfg.overrides:
            if _matches(override, device_id, device.kind, point):
                fields.update(override.policy_fields())
        policy = ReportPolicy.model_construct(**fields)
        return PointSpec(policy, _unit(device, point), device)


def _matches(sel: PointSelector, device_id: str, kind: str, point: str) -> bool:
    if sel.kinds is not None and kind not in sel.kinds:
        return False
    if sel.devices is not None and not any(fnmatchcase(device_id, _glob(pat))
                                           for pat in sel.devices):
        return False
    return sel.points is None or any(fnmatchcase(point, pat) for pat in sel.points)


def _glob(pattern: str) -> str:
    """A templated id (``door-{door}``) selects every device it expands to."""
    return _PLACEHOLDER.sub("*", pattern)


def _unit(device: DeviceConfig, point: str) -> str | None:
    points: list[ModbusPoint | MqttPoint | DerivedPoint] = [*device.points, *device.derived]
    for p in points:
        if p.name == point:
            return p.unit
    return None
