"""How silence from an MQTT device is judged: a device's ``offline:`` policy.

A polled Modbus device that stops answering is comm-loss at once. An MQTT device only ever
speaks for itself, and many (door contacts, fire zones) publish only when something changes:
hours of silence are normal for them. Rules that call a silent device offline (``{stale: 90s}``
without ``point``) are therefore only as good as what the device promises::

    offline: never                        # reports only on change, no heartbeat
    offline: {heartbeat: [heartbeat_seq]} # only these points prove it is alive
    offline: {after: 10m}                 # it reports at least every few minutes

The policy is honoured by the ``stale`` condition (device-wide form) and checked against the
rules by :func:`offline_warnings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from gateway.config._conditions import Condition, StaleCondition, references, walk
from gateway.config._types import Duration, Identifier
from gateway.config._types import StrictModel as _Model

if TYPE_CHECKING:
    from gateway.config._models import GatewayConfig

__all__ = ["OFFLINE_TAGS", "OfflinePolicy", "OfflineSetting", "device_stale_leaves",
           "offline_warnings"]

#: Internal union tags, hidden from error paths by the loader.
OFFLINE_TAGS = frozenset({"offline-never", "offline-policy"})


class OfflinePolicy(_Model):
    """What silence from the device means to ``stale`` conditions (without ``point``)."""

    after: Duration | None = Field(
        default=None, gt=0,
        description="silence this long means offline, instead of the rule's own duration")
    heartbeat: list[Identifier] = Field(
        default_factory=list,
        description="points whose readings prove the device alive (a heartbeat or status "
                    "topic); other points may stay silent for ever. Empty: any point")


def _offline_tag(value: Any) -> str | None:
    # One clear message for a wrong value instead of one per union member.
    if isinstance(value, str):
        return "offline-never" if value == "never" else None
    return "offline-policy" if isinstance(value, dict | OfflinePolicy) else None


#: ``never``: the device reports only on change; silence never means offline.
OfflineSetting = Annotated[
    Annotated[Literal["never"], Tag("offline-never")]
    | Annotated[OfflinePolicy, Tag("offline-policy")],
    Discriminator(_offline_tag, custom_error_type="offline",
                  custom_error_message="expected 'never' or a mapping {heartbeat: [POINT, "
                                       "...], after: DURATION}"),
]


def device_stale_leaves(cond: Condition) -> list[StaleCondition]:
    """The ``stale`` leaves that judge the whole device (no ``point``) in a condition."""
    return [c for c in walk(cond) if isinstance(c, StaleCondition) and c.point is None]


def offline_warnings(config: GatewayConfig) -> list[tuple[str, str]]:
    """``(key path, message)`` for MQTT devices whose silence a rule judges without knowing
    whether the device reports periodically, or never judges because it does not; a
    ``stale`` inside a reference (``{device: FACP-1, stale: 90s}``) judges the referenced
    device."""
    found: dict[tuple[str, str], str] = {}
    for rule in config.rules:
        judged = [(device_stale_leaves(rule.when), list(config.rule_devices(rule)))]
        judged += [(device_stale_leaves(ref.when), config.referenced_devices(rule, ref))
                   for ref in references(rule.when)]
        for leaves, devices in judged:
            if not leaves:
                continue
            after = f"{min(leaf.stale for leaf in leaves):g} s"
            for dev in devices:
                if dev.driver == "mqtt":
                    found.update(_offline_warning(config, rule.id, dev, after))
    return sorted(((path, message) for (path, _), message in found.items()),
                  key=lambda f: f[0])


def _offline_warning(config: GatewayConfig, rule_id: str, dev: Any, after: str
                     ) -> dict[tuple[str, str], str]:
    """At most one warning for one (rule, MQTT device), keyed to report it once."""
    path = f"devices[{_index(config, dev.id)}]"
    if dev.offline == "never":
        return {(f"{path}.offline", rule_id): (
            f"rule {rule_id} calls {dev.id} offline after {after} without a message, "
            f"but the device says 'offline: never' (it reports only on change): that "
            f"rule never fires for it, so nothing notices if it goes offline. Give it "
            f"a heartbeat point (offline: {{heartbeat: [POINT]}}) or a rule on its "
            f"status/last-will point")}
    if dev.offline is None and dev.stale_after is None:
        return {(path, rule_id): (
            f"rule {rule_id} calls {dev.id} offline after {after} without a message. "
            f"If the device reports only on change, set 'offline: never' (or "
            f"'offline: {{heartbeat: [POINT]}}'); if it reports at least that often, "
            f"say so with 'offline: {{after: DURATION}}' or 'stale_after'")}
    return {}


def _index(config: GatewayConfig, device_id: str) -> int:
    return next(i for i, d in enumerate(config.devices) if d.id == device_id)
