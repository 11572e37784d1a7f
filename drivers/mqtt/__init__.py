"""MQTT southbound driver: topics with ``{placeholders}``, payload decoding, one driver per broker.

Use :func:`build_mqtt_drivers` to get the drivers a site config asks for; each is a
:class:`~drivers.base.Driver`.
"""

from drivers.mqtt._build import build_mqtt_drivers, describe_subscriptions
from drivers.mqtt._driver import MALFORMED_LOG_INTERVAL, MqttDriver
from drivers.mqtt._payload import Decoded, Payload, PointDecoder, compile_path
from drivers.mqtt._topics import TopicPattern, expand_device_id, is_template

__all__ = [
    "MALFORMED_LOG_INTERVAL",
    "Decoded",
    "MqttDriver",
    "Payload",
    "PointDecoder",
    "TopicPattern",
    "build_mqtt_drivers",
    "compile_path",
    "describe_subscriptions",
    "expand_device_id",
    "is_template",
]
