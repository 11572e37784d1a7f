"""What a config reload (SIGHUP, ``systemctl reload propgw``) may change, and what it may not.

A reload applies a new ``devices:`` list, new ``rules:`` (with the detectors and profiles they
come from) and ``log_level`` while the gateway runs: the alarm journal, the lifecycle of every
alarm, the open work orders and the outbox are the same objects before and after, so nothing is
forgotten, raised twice or sent twice. Device links whose devices did not change keep running;
the others are stopped and started with the new settings.

Everything else (the site, ``state_dir``, ``brokers``, ``upstream``, ``console``, ``alarms``,
``work_orders``, ``health``, and any section added later) is fixed for the life of the process:
a reload that changes any of it is refused as a whole, naming the keys, and the running config
stays. Refusing beats applying half a file: the parts of a config refer to each other (a new
device names a new broker, a new rule a new category policy).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from drivers.base import Driver
from gateway.config import GatewayConfig

if TYPE_CHECKING:
    from drivers.modbus import ModbusLink
    from drivers.mqtt import MqttDriver

__all__ = ["RELOADABLE", "driver_inputs", "restart_only_changes"]

#: Top-level keys a reload applies in place.
RELOADABLE = frozenset({"devices", "rules", "log_level"})
#: Changed keys named in a refusal, beyond which they are counted.
_NAMED = 8


def restart_only_changes(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """Dotted keys that differ between ``old`` and ``new`` and that only a restart applies
    (e.g. ``upstream.outbox.path``, ``site.timezone``); empty when a reload may go ahead."""
    changed: list[str] = []
    for name in type(old).model_fields:
        if name not in RELOADABLE:
            changed += _diff(name, getattr(old, name), getattr(new, name))
    if len(changed) > _NAMED:
        changed = [*changed[:_NAMED], f"and {len(changed) - _NAMED} more"]
    return changed


def driver_inputs(config: GatewayConfig, drivers: Sequence[Driver]) -> dict[str, object]:
    """What each driver was built from, by driver name: a driver whose inputs are equal in the
    old and the new config keeps running through a reload."""
    by_id = {d.id: d for d in config.devices}
    # A driver class whose module was never imported has no instances: looked up in
    # sys.modules so that a site without Modbus (or MQTT) devices never loads pymodbus
    # (or aiomqtt) just to answer no.
    modbus = cast("type[ModbusLink] | None", _loaded("drivers.modbus._link", "ModbusLink"))
    mqtt = cast("type[MqttDriver] | None", _loaded("drivers.mqtt._driver", "MqttDriver"))
    out: dict[str, object] = {}
    for driver in drivers:
        if modbus is not None and isinstance(driver, modbus):
            out[driver.name] = tuple(by_id[i] for i in driver.device_ids)
        elif mqtt is not None and isinstance(driver, mqtt):
            out[driver.name] = (driver.broker, driver.devices, driver.lane_subscriptions)
        else:  # a kind this module does not know: never taken for unchanged
            out[driver.name] = object()
    return out


def _loaded(module: str, name: str) -> object:
    """``module.name`` if that module is already imported, else None."""
    return getattr(sys.modules.get(module), name, None)


def _diff(path: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, BaseModel) and type(old) is type(new):
        found = [key for name in type(old).model_fields
                 for key in _diff(f"{path}.{name}", getattr(old, name), getattr(new, name))]
        return found or ([path] if old != new else [])
    if isinstance(old, dict) and isinstance(new, dict):
        return [key for name in sorted(old.keys() | new.keys(), key=str)
                for key in _diff(f"{path}.{name}", old.get(name), new.get(name))]
    return [] if old == new else [path]
