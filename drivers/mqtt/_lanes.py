"""Which MQTT points are life-safety: their messages get their own connection and are never shed.

A point is life-safety when a P0 or P1 rule reads it (detector packs are rules by then), or
when a derived point such a rule reads is computed from it. A rule that watches a whole
device (``stale``, ``comm_loss``) makes every point of that device life-safety: its silence
is what the rule is about, so none of its messages may be shed.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import ALL_POINTS, GatewayConfig, condition_points

__all__ = ["LIFE_SAFETY_PRIORITIES", "life_safety_points"]

#: Priorities whose rules make the points they read life-safety.
LIFE_SAFETY_PRIORITIES = frozenset({"P0", "P1"})


def life_safety_points(config: GatewayConfig) -> Mapping[str, frozenset[str]]:
    """Device id (as configured, templates included) → its life-safety point names.

    ``"*"`` (:data:`ALL_POINTS`) in a set means every point of the device.
    """
    wanted: dict[str, set[str]] = {}
    for rule in config.rules:
        if rule.priority not in LIFE_SAFETY_PRIORITIES:
            continue
        names = condition_points(rule.when)
        for device in config.rule_devices(rule):
            wanted.setdefault(device.id, set()).update(names)
    by_id = {d.id: d for d in config.devices}
    out: dict[str, frozenset[str]] = {}
    for device_id, names in wanted.items():
        config_device = by_id.get(device_id)
        derived = ({d.name: d.inputs() for d in config_device.derived}
                   if config_device is not None else {})
        pending = [n for n in names if n in derived]
        while pending:  # a derived point's inputs, and theirs, transitively
            for name in derived.get(pending.pop(), frozenset()):
                if name not in names:
                    names.add(name)
                    pending.append(name)
        out[device_id] = frozenset(names if ALL_POINTS not in names else {ALL_POINTS})
    return out
