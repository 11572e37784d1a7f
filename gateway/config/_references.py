"""Checks the ``device:`` references in rule conditions against the configured devices.

A reference names a device by its concrete id: a literal device id, or an id a templated
device produces (``fire-panel-1-zone-3`` for ``fire-panel-1-zone-{zone}``). Every point the
referenced condition reads must be one of that device's points. Mistakes are reported with the
key path of the reference (``rules[2].when.all[1].device``) or of the leaf that names the
point (``rules[2].when.all[1].point``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from gateway.config._conditions import (
    AllCondition,
    AllDevicesCondition,
    AnyCondition,
    AnyDeviceCondition,
    Condition,
    CounterCondition,
    DeviceRefCondition,
    EdgeCondition,
    NotCondition,
)
from gateway.config._devices import DeviceConfig, placeholders
from gateway.config._rules import RuleConfig

__all__ = ["reference_problems", "referenced_device"]

_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def reference_problems(rules: Sequence[RuleConfig], devices: Sequence[DeviceConfig],
                       points_of: Callable[[DeviceConfig], set[str]]) -> list[str]:
    """``"key path: message"`` for every reference to an unknown device or point."""
    problems: list[str] = []
    for i, rule in enumerate(rules):
        for path, ref in _located_refs(rule.when, f"rules[{i}].when"):
            dev = referenced_device(ref.device, devices)
            if dev is None:
                known = ", ".join(sorted(d.id for d in devices)) or "none"
                problems.append(f"{path}.device: unknown device {ref.device!r} (rule {rule.id}; "
                                f"devices: {known})")
                continue
            names = points_of(dev)
            for leaf_path, leaf in _located(ref.when, path):
                for key, point in _leaf_points(leaf):
                    if point not in names:
                        problems.append(
                            f"{leaf_path}.{key}: device {ref.device!r} has no point {point!r} "
                            f"(rule {rule.id}; points: {', '.join(sorted(names)) or 'none'})")
    return problems


def referenced_device(device_id: str, devices: Sequence[DeviceConfig]) -> DeviceConfig | None:
    """The config of the device a reference names: by literal id, else the template that
    produces it (the one with the most literal text, as at run time)."""
    for dev in devices:
        if dev.id == device_id:
            return dev
    templated = sorted((d for d in devices if placeholders(d.id)),
                       key=lambda d: -len(_PLACEHOLDER.sub("", d.id)))
    for dev in templated:
        if _template(dev.id).fullmatch(device_id):
            return dev
    return None


def _template(device_id: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(device_id)
    return re.compile("[^/]+?".join(re.escape(p) for p in parts))


def _located_refs(cond: Condition, path: str) -> Iterator[tuple[str, DeviceRefCondition]]:
    for where, node in _located(cond, path):
        if isinstance(node, DeviceRefCondition):
            yield where, node


def _located(cond: Condition, path: str) -> Iterator[tuple[str, Condition]]:
    """Every condition in the tree with its key path as the file writes it; a reference is
    yielded, not entered (its keys sit beside ``device:``: its condition shares its path)."""
    yield path, cond
    children: list[tuple[str, Condition]] = []
    if isinstance(cond, AllCondition):
        children = [(f"{path}.all[{i}]", c) for i, c in enumerate(cond.all)]
    elif isinstance(cond, AnyCondition):
        children = [(f"{path}.any[{i}]", c) for i, c in enumerate(cond.any)]
    elif isinstance(cond, NotCondition):
        children = [(f"{path}.not", cond.not_)]
    elif isinstance(cond, AllDevicesCondition):
        children = [(f"{path}.all_devices", cond.all_devices)]
    elif isinstance(cond, AnyDeviceCondition):
        children = [(f"{path}.any_device", cond.any_device)]
    elif isinstance(cond, EdgeCondition) and cond.while_ is not None:
        children = [(f"{path}.while", cond.while_)]
    for child_path, child in children:
        yield from _located(child, child_path)


def _leaf_points(leaf: Condition) -> list[tuple[str, str]]:
    """(key, point name) of what one leaf reads itself (an edge's ``while`` is its own
    node); combinators and references have no ``point`` of their own."""
    found: list[tuple[str, str]] = []
    point = getattr(leaf, "point", None)
    if isinstance(point, str):
        found.append(("point", point))
    if isinstance(leaf, CounterCondition) and leaf.reset is not None:
        found.append(("reset.point", leaf.reset.point))
    return found
