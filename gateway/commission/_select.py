"""Find the device and points a command line names, or say which ones exist."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import DeviceConfig, GatewayConfig

__all__ = ["Selection", "UsageError", "select_device", "select_devices"]

_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
#: What a placeholder can become: one topic level that is a valid device id part.
_LEVEL = r"[A-Za-z0-9_.\-]+"


class UsageError(ValueError):
    """The command line names something the config does not have; the message lists what it
    does have."""


@dataclass(frozen=True)
class Selection:
    """One device to read.

    Attributes:
        device: Its config.
        device_id: The id asked for: the config id, or a concrete id of a device whose id is a
            template (``{panel}`` read as ``FACP-1``); None means every concrete id.
        points: The point names to show, in config order: those asked for, and the inputs
            of the derived points asked for.
        derived: The derived points to show, in config order.
    """

    device: DeviceConfig
    device_id: str | None
    points: tuple[str, ...]
    derived: tuple[str, ...] = ()


def select_device(config: GatewayConfig, device_id: str, points: Sequence[str]) -> Selection:
    """Resolve ``DEVICE [POINT...]`` of ``propgw read``.

    A device whose configured id has placeholders (``{panel}``) is found by that id (every
    concrete device it stands for) or by a concrete id it can produce (``FACP-1``).

    Raises:
        UsageError: No such device, or no such point on it.
    """
    device, concrete = _find(config, device_id)
    names = [p.name for p in device.points]
    derived = {d.name: d for d in device.derived}
    unknown = [p for p in points if p not in names and p not in derived]
    if unknown:
        known = [*names, *derived]
        hints = [f"{p!r}{_did_you_mean(p, known)}" for p in unknown]
        raise UsageError(f"device {device.id} has no point {', '.join(hints)}; its points: "
                         f"{', '.join(known) or 'none'}")
    if not names:
        raise UsageError(f"device {device.id} has no points to read")
    if not points:
        return Selection(device, concrete, tuple(names), tuple(derived))
    asked = set(points)
    todo = [p for p in points if p in derived]
    while todo:  # a derived point needs its inputs, which may be derived themselves
        for name in derived[todo.pop()].inputs():
            if name not in asked:
                asked.add(name)
                if name in derived:
                    todo.append(name)
    return Selection(device, concrete, tuple(n for n in names if n in asked),
                     tuple(n for n in derived if n in asked))


def select_devices(config: GatewayConfig, device_ids: Sequence[str]) -> list[DeviceConfig]:
    """Resolve ``[DEVICE...]`` of ``propgw watch``: the named devices (by config id), or every
    enabled device when none is named.

    Raises:
        UsageError: A named device does not exist, or nothing is left to watch.
    """
    if not device_ids:
        chosen = [d for d in config.devices if d.enabled]
        if not chosen:
            raise UsageError("the config has no enabled device to watch")
        return chosen
    by_id = {d.id: d for d in config.devices}
    unknown = [d for d in device_ids if d not in by_id]
    if unknown:
        raise UsageError(f"no device {', '.join(repr(d) for d in unknown)}"
                         f"{_did_you_mean(unknown[0], list(by_id))}; devices: "
                         f"{_listing(config)}")
    return [by_id[d] for d in dict.fromkeys(device_ids)]


def _find(config: GatewayConfig, device_id: str) -> tuple[DeviceConfig, str | None]:
    for device in config.devices:
        if device.id == device_id:
            return device, (None if _PLACEHOLDER.search(device.id) else device.id)
    for device in config.devices:
        if _PLACEHOLDER.search(device.id) and _template_regex(device.id).fullmatch(device_id):
            return device, device_id
    ids = [d.id for d in config.devices]
    raise UsageError(f"no device {device_id!r}{_did_you_mean(device_id, ids)}; devices: "
                     f"{_listing(config)}")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(template)
    return re.compile(_LEVEL.join(re.escape(p) for p in parts))


def _listing(config: GatewayConfig) -> str:
    items = []
    for d in config.devices:
        note = " (disabled)" if not d.enabled else ""
        items.append(f"{d.id} [{d.driver}]{note}")
    return ", ".join(items) or "none"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
