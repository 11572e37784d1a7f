"""Build the MQTT drivers a site config asks for: one per broker that has enabled devices."""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.mqtt._ids import Selector
from drivers.mqtt._lanes import life_safety_points
from drivers.mqtt._topics import TopicPattern
from gateway.config import ALL_POINTS, GatewayConfig, MqttDevice
from gateway.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from drivers.mqtt._driver import MqttDriver
    from gateway.clock import Clock

# The driver (and with it aiomqtt and paho) is imported by build_mqtt_drivers only:
# describe_subscriptions serves `propgw check-config`, which must not pay for it.

__all__ = ["build_mqtt_drivers", "describe_subscriptions"]


def build_mqtt_drivers(config: GatewayConfig, clock: Clock) -> list[MqttDriver]:
    """One :class:`MqttDriver` per broker that has at least one enabled MQTT device.

    A device without ``broker`` uses the only device broker (the config model has already
    rejected that when there is not exactly one). Drivers come in the order of ``brokers:``.
    Reads the site's time-zone data from disk, so call it before the event loop starts or
    through ``asyncio.to_thread``.

    Args:
        config: The validated site config.
        clock: Time source shared by the drivers.

    Topics that carry points read by P0/P1 rules get their own connection per broker (see
    :func:`~drivers.mqtt._lanes.life_safety_points`).

    Returns:
        The drivers, not yet running.

    Raises:
        ConfigError: The site time zone is unknown, or a point's ``path`` or
            ``timestamp_path`` cannot be used.
    """
    by_broker = _devices_by_broker(config)
    if not by_broker:
        return []
    try:
        tz = ZoneInfo(config.site.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("config", [ConfigProblem(
            "site.timezone", "unknown IANA time zone", config.site.timezone)]) from None
    from drivers.mqtt._driver import MqttDriver  # noqa: PLC0415 - see the imports

    life_safety = life_safety_points(config)
    drivers: list[MqttDriver] = []
    problems: list[ConfigProblem] = []
    for broker_id, broker_cfg in config.brokers.items():
        if broker_id not in by_broker:
            continue
        try:
            drivers.append(MqttDriver(broker_id, broker_cfg, by_broker[broker_id],
                                      gateway_id=config.site.gateway_id, clock=clock, tz=tz,
                                      life_safety=life_safety))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError("config", problems)
    return drivers


def describe_subscriptions(config: GatewayConfig) -> list[str]:
    """One line per enabled MQTT device: broker, topic filters, QoS, the payload fields that
    name or select its messages, stale timeout and the points whose topics travel on the
    life-safety connection.

    For ``propgw check-config``; reads nothing but the config.
    """
    lines: list[str] = []
    life_safety = life_safety_points(config)
    for broker_id, devices in _devices_by_broker(config).items():
        for device in devices:
            filters = dict.fromkeys(TopicPattern.compile(p.topic).filter for p in device.points)
            stale = f", stale after {device.stale_after:g}s" if device.stale_after else ""
            fields = "".join(f", {{{name}}} from payload field {path}"
                             for name, path in device.split_by.items())
            select = Selector.compile(device.select)
            if select is not None:
                fields += f", only messages with {select.describe()}"
            lines.append(f"mqtt {device.id} via broker {broker_id}: {len(device.points)} "
                         f"point(s) on {', '.join(filters) or 'no topic'} (QoS {device.qos})"
                         f"{fields}{stale}{_lane_note(device, life_safety.get(device.id))}")
    return lines


def _lane_note(device: MqttDevice, names: frozenset[str] | None) -> str:
    """Which of the device's topics go on the life-safety connection (never shed)."""
    if not names:
        return ""
    if ALL_POINTS in names:
        return "; life-safety: all points"
    # A message carries every point on its topic: they all travel with the life-safety one.
    topics = {p.topic for p in device.points if p.name in names}
    points = sorted(p.name for p in device.points if p.topic in topics)
    return f"; life-safety: {', '.join(points)}" if points else ""


def _devices_by_broker(config: GatewayConfig) -> dict[str, list[MqttDevice]]:
    device_brokers = config.device_brokers()
    default = next(iter(device_brokers)) if len(device_brokers) == 1 else None
    by_broker: dict[str, list[MqttDevice]] = {}
    for device in config.devices:
        if isinstance(device, MqttDevice) and device.enabled:
            broker = device.broker or default
            if broker is None:  # the config model rejects this; never guess a broker
                raise ConfigError("config", [ConfigProblem(
                    f"device {device.id!r}", "no broker given and no single device broker")])
            by_broker.setdefault(broker, []).append(device)
    return by_broker
