"""Checks the ``device:`` references in rule conditions against the configured devices, and
fills the placeholders of a templated reference.

A reference names a device by its concrete id: a literal device id, or an id a templated
device produces (``fire-panel-1-zone-3`` for ``fire-panel-1-zone-{zone}``). It may also hold
placeholders filled from the rule's own device, so one rule covers a whole site: on a door
whose ``location.zone`` is ``"3"``, ``FACP-1-zone-{zone}`` reads ``FACP-1-zone-3``. The names
are the location fields (:data:`REFERENCE_FIELDS`) and, for a templated device
(``door-{door}``), its id's captures; a capture wins over a location field of the same name.

Every point the referenced condition reads must be one of that device's points. Mistakes are
reported with the key path of the reference (``rules[2].when.all[1].device``) or of the leaf
that names the point (``rules[2].when.all[1].point``). A templated reference is an error only
when it can never work (a placeholder no device of the rule has, or no device of the rule
resolving to a configured device); a device of the rule for which it resolves to nothing is a
warning (:func:`reference_warnings`): that device's condition is unknown at run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

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
from gateway.config._devices import DeviceConfig, Location, placeholders
from gateway.config._rules import RuleConfig

__all__ = ["REFERENCE_FIELDS", "fill_reference", "reference_fields", "reference_problems",
           "reference_targets", "reference_warnings", "referenced_device"]

#: The location fields a reference's ``{placeholders}`` may name.
REFERENCE_FIELDS = ("building", "floor", "zone", "room")

_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")

DevicesOf = Callable[[RuleConfig], Sequence[DeviceConfig]]


def reference_fields(location: Location, captures: Mapping[str, str]) -> dict[str, str]:
    """What a reference's placeholders are filled with for one device: its location fields
    that are set, then its id's captures (``door-{door}`` seen as ``door-7``: door=7)."""
    found = {name: value for name in REFERENCE_FIELDS
             if (value := getattr(location, name)) is not None}
    found.update(captures)
    return found


def fill_reference(template: str, fields: Mapping[str, str]) -> str | None:
    """The device id a reference names for one device; None when a placeholder has no value
    there or the filled text is not a device id (a zone "3 east" makes no id)."""
    if "{" not in template:
        return template
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        value = fields.get(match.group(1))
        if value is None:
            missing = True
            return match.group(0)
        return value

    filled = _NAME.sub(one, template)
    return None if missing or not _IDENTIFIER.fullmatch(filled) else filled


def reference_problems(rules: Sequence[RuleConfig], devices: Sequence[DeviceConfig],
                       points_of: Callable[[DeviceConfig], set[str]],
                       devices_of: DevicesOf | None = None) -> list[str]:
    """``"key path: message"`` for every reference to an unknown device or point."""
    problems: list[str] = []
    for i, rule in enumerate(rules):
        for path, ref in _located_refs(rule.when, f"rules[{i}].when"):
            if placeholders(ref.device) and devices_of is not None:
                found = _resolve_for_rule(rule, ref.device, devices, devices_of)
                problems += found.problems(path, rule)
                targets = found.targets()
            else:
                dev = referenced_device(ref.device, devices)
                if dev is None:
                    known = ", ".join(sorted(d.id for d in devices)) or "none"
                    problems.append(f"{path}.device: unknown device {ref.device!r} "
                                    f"(rule {rule.id}; devices: {known})")
                    continue
                targets = [(ref.device, dev)]
            for shown, dev in targets:
                problems += _point_problems(rule, ref, path, shown, points_of(dev))
    return problems


def reference_targets(rule: RuleConfig, ref: DeviceRefCondition,
                      devices: Sequence[DeviceConfig], devices_of: DevicesOf
                      ) -> list[DeviceConfig]:
    """The configured devices a reference of ``rule`` reads (for a templated reference, those
    it resolves to for some device of the rule; a templated device's config once)."""
    if placeholders(ref.device):
        return [dev for _, dev in _resolve_for_rule(rule, ref.device, devices,
                                                    devices_of).targets()]
    dev = referenced_device(ref.device, devices)
    return [] if dev is None else [dev]


def reference_warnings(rules: Sequence[RuleConfig], devices: Sequence[DeviceConfig],
                       devices_of: DevicesOf) -> list[tuple[str, str]]:
    """``(key path, message)`` per device of a rule for which a templated reference names no
    device, when others of the rule resolve (else it is an error, not a warning)."""
    found: list[tuple[str, str]] = []
    for i, rule in enumerate(rules):
        for path, ref in _located_refs(rule.when, f"rules[{i}].when"):
            if not placeholders(ref.device):
                continue
            resolved = _resolve_for_rule(rule, ref.device, devices, devices_of)
            if not resolved.targets():
                continue
            for who, why in resolved.unresolved:
                found.append((f"{path}.device",
                              f"{ref.device!r} names no device for {who} ({why}): that part "
                              f"of rule {rule.id} is unknown there, so it can only fire through "
                              f"another branch of an any/not"))
    return found


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


@dataclass
class _Resolved:
    """Where one templated reference leads, for each device (or group) of its rule."""

    template: str
    #: (who, concrete id or pattern as filled, the device config it names).
    resolved: list[tuple[str, str, DeviceConfig]]
    #: (who, why it names nothing).
    unresolved: list[tuple[str, str]]
    #: Placeholders no device of the rule can fill.
    never: list[str]

    def targets(self) -> list[tuple[str, DeviceConfig]]:
        seen: dict[str, tuple[str, DeviceConfig]] = {}
        for _, shown, dev in self.resolved:
            seen.setdefault(dev.id, (shown, dev))
        return list(seen.values())

    def problems(self, path: str, rule: RuleConfig) -> list[str]:
        if self.never:
            names = ", ".join("{" + n + "}" for n in self.never)
            return [f"{path}.device: {names} in {self.template!r} is not a location field "
                    f"({', '.join(REFERENCE_FIELDS)}) of any device of rule {rule.id}, nor a "
                    f"placeholder of their ids"]
        if self.resolved or not self.unresolved:
            return []
        shown = "; ".join(f"{who}: {why}" for who, why in self.unresolved[:5])
        more = f"; and {len(self.unresolved) - 5} more" if len(self.unresolved) > 5 else ""
        return [f"{path}.device: {self.template!r} names no configured device for any device "
                f"of rule {rule.id}, so the rule can never read it ({shown}{more})"]


def _resolve_for_rule(rule: RuleConfig, template: str, devices: Sequence[DeviceConfig],
                      devices_of: DevicesOf) -> _Resolved:
    """Fill ``template`` for every device of the rule, as the evaluator will: a templated
    device's captures are not known before it reports, so they stand for any value here."""
    result = _Resolved(template, [], [], [])
    wanted = set(_NAME.findall(template))
    captured: set[str] = set()
    named: dict[str, DeviceConfig | None] = {}
    for who, fields, captures in _rule_fields(rule, devices_of):
        captured |= captures
        # Location values of a templated device may hold its captures ("{zone}").
        filled = _fill_known(template, fields)
        left = set(_NAME.findall(filled))
        lacking = sorted(left - captures)
        if lacking:
            names = ", ".join(lacking)
            result.unresolved.append((who, f"no {names} in its location"))
            continue
        if filled not in named:  # many devices name the same few (one per zone)
            named[filled] = _matching_device(filled, devices) if left \
                else referenced_device(filled, devices)
        dev = named[filled]
        if dev is None or (not left and not _IDENTIFIER.fullmatch(filled)):
            result.unresolved.append((who, f"{filled!r} is no configured device"))
        else:
            result.resolved.append((who, filled, dev))
    result.never = sorted(wanted - captured - set(REFERENCE_FIELDS))
    return result


def _fill_known(template: str, fields: Mapping[str, str]) -> str:
    """``template`` with the placeholders ``fields`` has filled, the others kept."""
    return _NAME.sub(lambda m: fields.get(m.group(1), m.group(0)), template)


def _rule_fields(rule: RuleConfig, devices_of: DevicesOf
                 ) -> Iterator[tuple[str, dict[str, str], set[str]]]:
    """(who, fields known from the config, names captured at run time) per device of the
    rule; for a ``group_by`` rule per group (its instance is the group's)."""
    devices = [d for d in devices_of(rule) if d.enabled]
    if rule.group_by is not None:
        field_name = str(rule.group_by)
        keys: dict[str, None] = {}
        for dev in devices:
            if placeholders(dev.id):
                continue
            key = "all" if field_name == "site" else getattr(dev.location, field_name)
            if key is not None:
                keys.setdefault(key)
        for key in keys:
            fields = {} if field_name == "site" else {field_name: key}
            yield (f"group {field_name}:{key}" if field_name != "site" else "the site",
                   fields, set())
        return
    for dev in devices:
        captures = placeholders(dev.id)  # a capture wins over a location field, as at run time
        fields = {k: v for k, v in reference_fields(dev.location, {}).items()
                  if k not in captures}
        yield f"device {dev.id!r}", fields, captures


def _matching_device(pattern: str, devices: Sequence[DeviceConfig]) -> DeviceConfig | None:
    """A device some value of the ``{captures}`` left in ``pattern`` names: a literal id it
    matches, else a templated device that produces such ids (tried with a sample value)."""
    rx = _template(pattern)
    for dev in devices:
        if dev.enabled and not placeholders(dev.id) and rx.fullmatch(dev.id):
            return dev
    return referenced_device(_PLACEHOLDER.sub("1", pattern), devices)


def _point_problems(rule: RuleConfig, ref: DeviceRefCondition, path: str, shown: str,
                    names: set[str]) -> list[str]:
    problems = []
    for leaf_path, leaf in _located(ref.when, path):
        for key, point in _leaf_points(leaf):
            if point not in names:
                problems.append(
                    f"{leaf_path}.{key}: device {shown!r} has no point {point!r} "
                    f"(rule {rule.id}; points: {', '.join(sorted(names)) or 'none'})")
    return problems


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
