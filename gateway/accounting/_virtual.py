"""What accounting adds to the site's devices, for consumers that look readings up in the
config (telemetry, InfluxDB tags): the interval points of each meter, and the virtual
``building.<name>`` devices with theirs."""

from __future__ import annotations

from gateway.config import (
    BUILDING_KIND,
    BUILDING_PREFIX,
    DeviceConfig,
    GatewayConfig,
    Location,
    MqttDevice,
)

__all__ = ["BUILDING_KIND", "BUILDING_PREFIX", "accounted_points", "building_devices"]


def accounted_points(config: GatewayConfig) -> dict[str, dict[str, str | None]]:
    """Device id → the interval points accounting publishes for it (meters and buildings),
    each with its register's unit; empty when accounting is off."""
    acct = config.accounting
    if acct is None or not acct.enabled:
        return {}
    out: dict[str, dict[str, str | None]] = {}
    for dev in config.devices:
        if not dev.enabled:
            continue
        units: dict[str, str | None] = {p.name: p.unit for p in [*dev.points, *dev.derived]}
        points = {point: units.get(point.rpartition("_")[0])
                  for point in sorted(acct.points_for(dev.point_names()))}
        if not points:
            continue
        out[dev.id] = points
        if dev.location.building:
            out.setdefault(BUILDING_PREFIX + dev.location.building, {}).update(points)
    return out


def building_devices(config: GatewayConfig) -> dict[str, DeviceConfig]:
    """A stand-in config for each ``building.<name>`` device: its id, kind ``building`` and
    ``location.building``, no points of its own (its points are in :func:`accounted_points`).
    """
    out: dict[str, DeviceConfig] = {}
    for device_id in accounted_points(config):
        if device_id.startswith(BUILDING_PREFIX) and device_id not in out:
            name = device_id.removeprefix(BUILDING_PREFIX)
            # Built without validation: a building name need not be a valid device id, and
            # the device has no driver; only id, name, kind and location are read.
            out[device_id] = MqttDevice.model_construct(
                id=device_id, name=name, kind=BUILDING_KIND, driver="mqtt",
                location=Location(building=name), points=[], derived=[], enabled=True)
    return out
