"""Wait for the next message(s) of one MQTT device and decode them with the gateway's decoders.

Topic matching, device-id expansion, ``select`` and payload decoding are the driver's own
(:class:`~drivers.mqtt.TopicPattern`, :class:`~drivers.mqtt.DeviceIds`,
:class:`~drivers.mqtt.Selector`, :class:`~drivers.mqtt.PointDecoder`), so an engineer sees
the messages the gateway reads; the connection is the gateway's
:class:`~gateway.mqtt_client.MqttSession`, under a client id of its own so that a running
gateway on the same broker keeps its session.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo

import aiomqtt

from drivers.mqtt import DeviceIds, IdError, Payload, PointDecoder, Selector, TopicPattern
from gateway.clock import Clock
from gateway.commission._rows import PointRow, after_decoding
from gateway.commission._select import Selection
from gateway.config import BrokerConfig, GatewayConfig, MqttDevice, MqttPoint
from gateway.errors import DecodeError
from gateway.model import Quality
from gateway.mqtt_client import MqttSession

__all__ = ["MAX_MESSAGES", "Listener", "Message", "Outcome", "broker_of"]

#: ``read`` stops after this many matching messages even if some point is still missing
#: (a ``+`` topic can carry a whole building's devices).
MAX_MESSAGES = 50


@dataclass(frozen=True)
class Message:
    """One message of the device, with every wanted point decoded from it."""

    topic: str
    payload: bytes
    retained: bool
    device_id: str
    rows: list[PointRow]


@dataclass
class Outcome:
    """What listening brought: the messages, and the wanted points no message carried."""

    messages: list[Message] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: The last connection error, if the broker could not be reached.
    broker_error: str | None = None


class Listener:
    """Subscribes to one device's topics until every wanted point was decoded once.

    Args:
        config: The site config (for the broker).
        selection: The device, the concrete id asked for (if any) and the wanted points.
        tz: The site's time zone (device timestamps without an offset).
        clock: Time source for the session's reconnect back-off.

    Raises:
        ValueError: A point's ``path`` cannot be used (the config loader reports it first).
    """

    def __init__(self, config: GatewayConfig, selection: Selection, *, tz: tzinfo,
                 clock: Clock) -> None:
        device = selection.device
        if not isinstance(device, MqttDevice):
            raise TypeError(f"device {device.id} is not an MQTT device")
        self.device = device
        self.selection = selection
        self.broker_id, self.broker = broker_of(config, device)
        self._clock = clock
        by_topic: dict[str, list[PointDecoder]] = {}
        for point in device.points:
            if point.name in selection.points:
                by_topic.setdefault(point.topic, []).append(PointDecoder(point, tz=tz))
        self._routes = [(TopicPattern.compile(topic), decoders)
                        for topic, decoders in by_topic.items()]
        self._ids = DeviceIds.compile(device.id, device.split_by)
        self._select = Selector.compile(device.select)

    @property
    def filters(self) -> list[str]:
        """The subscription filters, one per distinct topic of the wanted points."""
        return list(dict.fromkeys(pattern.filter for pattern, _ in self._routes))

    async def listen(self, wait: float, on_message: Callable[[Message], None]) -> Outcome:
        """Listen until every wanted point was decoded, :data:`MAX_MESSAGES` arrived, or
        ``wait`` seconds passed; ``on_message`` sees each matching message at once."""
        outcome = Outcome()
        seen: set[str] = set()

        async def serve(client: aiomqtt.Client) -> None:
            outcome.broker_error = None
            await client.subscribe([(f, int(self.device.qos)) for f in self.filters],
                                   timeout=self.broker.connect_timeout)
            async for message in client.messages:
                decoded = self._decode(message)
                if decoded is None:
                    continue
                outcome.messages.append(decoded)
                seen.update(row.point for row in decoded.rows)
                on_message(decoded)
                if seen >= set(self.selection.points) or len(outcome.messages) >= MAX_MESSAGES:
                    return

        async def down(reason: str) -> None:
            outcome.broker_error = reason

        session = MqttSession(f"read-{self.broker_id}", self.broker,
                              client_id=f"propgw-read-{os.getpid()}", clock=self._clock,
                              on_connected=serve, on_down=down)
        try:
            async with asyncio.timeout(wait):
                await session.run()
        except TimeoutError:
            pass
        outcome.missing = [p for p in self.selection.points if p not in seen]
        return outcome

    def _decode(self, message: aiomqtt.Message) -> Message | None:
        topic = message.topic.value
        raw = message.payload
        data = (bytes(raw) if isinstance(raw, bytes | bytearray)
                else raw.encode() if isinstance(raw, str) else b"" if raw is None
                else str(raw).encode())
        payload = Payload(data)
        if self._select is not None and not self._select.selects(payload):
            return None  # another device's message on a shared topic (e.g. another zone)
        rows: list[PointRow] = []
        device_id = self.device.id
        for pattern, decoders in self._routes:
            values = pattern.match(topic)
            if values is None:
                continue
            if self._ids.templated:
                try:
                    device_id = self._ids.device_id(values, payload)
                except IdError:
                    continue
            if self.selection.device_id is not None and device_id != self.selection.device_id:
                continue
            rows += [_row(device_id, decoder, payload) for decoder in decoders]
        if not rows:
            return None
        return Message(topic, data, bool(message.retain), device_id, rows)


def broker_of(config: GatewayConfig, device: MqttDevice) -> tuple[str, BrokerConfig]:
    """The broker a device is read from: its own ``broker``, or the only device broker."""
    broker_id = device.broker or sorted(config.device_brokers())[0]
    return broker_id, config.brokers[broker_id]


def _row(device_id: str, decoder: PointDecoder, payload: Payload) -> PointRow:
    point = decoder.point
    source = point.topic
    try:
        decoded = decoder.decode(payload, device=device_id)
    except DecodeError as exc:
        return PointRow(device_id, point.name, source, _decoding(point), "", None, Quality.BAD,
                        point.unit or "", str(exc.args[0]))
    return PointRow(device_id, point.name, source, _decoding(point), "", decoded.value,
                    Quality.GOOD, point.unit or "")


def _decoding(point: MqttPoint) -> str:
    parts = [f"path {point.path}" if point.path else "whole payload", point.type]
    return " ".join(parts + after_decoding(point))

