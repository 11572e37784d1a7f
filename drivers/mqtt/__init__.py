"""MQTT southbound driver: topics with ``{placeholders}``, payload decoding, one driver per broker.

Use :func:`build_mqtt_drivers` to get the drivers a site config asks for; each is a
:class:`~drivers.base.Driver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy_attributes

if TYPE_CHECKING:
    from drivers.mqtt._build import build_mqtt_drivers, describe_subscriptions
    from drivers.mqtt._driver import MALFORMED_LOG_INTERVAL, SHED_LOG_INTERVAL, MqttDriver
    from drivers.mqtt._ids import DeviceIds, IdError, Selector
    from drivers.mqtt._lanes import LIFE_SAFETY_PRIORITIES, life_safety_points
    from drivers.mqtt._payload import Decoded, Payload, PointDecoder, compile_path, id_text
    from drivers.mqtt._routing import RouteTable
    from drivers.mqtt._topics import TopicPattern, expand_device_id, is_template

__all__ = [
    "LIFE_SAFETY_PRIORITIES",
    "MALFORMED_LOG_INTERVAL",
    "SHED_LOG_INTERVAL",
    "Decoded",
    "DeviceIds",
    "IdError",
    "MqttDriver",
    "Payload",
    "PointDecoder",
    "RouteTable",
    "Selector",
    "TopicPattern",
    "build_mqtt_drivers",
    "compile_path",
    "describe_subscriptions",
    "expand_device_id",
    "id_text",
    "is_template",
    "life_safety_points",
]

#: Where each name lives. The submodules load on first use, so that `check-config` can
#: plan the polling without importing the protocol library (PEP 562).
_WHERE = {
    "Decoded": "drivers.mqtt._payload",
    "DeviceIds": "drivers.mqtt._ids",
    "IdError": "drivers.mqtt._ids",
    "MALFORMED_LOG_INTERVAL": "drivers.mqtt._driver",
    "MqttDriver": "drivers.mqtt._driver",
    "Payload": "drivers.mqtt._payload",
    "PointDecoder": "drivers.mqtt._payload",
    "RouteTable": "drivers.mqtt._routing",
    "Selector": "drivers.mqtt._ids",
    "TopicPattern": "drivers.mqtt._topics",
    "build_mqtt_drivers": "drivers.mqtt._build",
    "compile_path": "drivers.mqtt._payload",
    "describe_subscriptions": "drivers.mqtt._build",
    "expand_device_id": "drivers.mqtt._topics",
    "id_text": "drivers.mqtt._payload",
    "is_template": "drivers.mqtt._topics",
    "LIFE_SAFETY_PRIORITIES": "drivers.mqtt._lanes",
    "SHED_LOG_INTERVAL": "drivers.mqtt._driver",
    "life_safety_points": "drivers.mqtt._lanes",
}


__getattr__ = lazy_attributes(globals(), _WHERE)
