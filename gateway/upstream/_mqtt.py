"""Publishes alarms and work orders to the platform's MQTT broker.

Topics, under ``<topic_prefix>/<site id>/``:

* ``work-orders``: work orders and their updates (QoS 1, JSON, see ``docs/upstream.md``);
* ``alarms``: every alarm transition;
* ``gateway/status``: retained ``online`` on connect, and ``offline`` as the last will, so the
  platform sees a dead gateway.

Messages wait in a bounded priority queue while the broker is away; life-safety (P0) messages
leave first. A message leaves the queue only once the broker has acknowledged it (PUBACK), so a
broken connection re-sends it on the next one. (The durable SQLite outbox that survives a power
cut replaces this queue in the work-order issue.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass, field

import aiomqtt

from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.mqtt_client import LinkState, MqttSession

__all__ = ["OutgoingMessage", "UpstreamPublisher"]

log = logging.getLogger(__name__)

_PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
_PUBLISH_TIMEOUT = 10.0
_GOODBYE_TIMEOUT = 1.0


@dataclass(order=True, frozen=True)
class OutgoingMessage:
    rank: int
    seq: int
    topic: str = field(compare=False)
    payload: bytes = field(compare=False)
    retain: bool = field(default=False, compare=False)


class UpstreamPublisher:
    """Owns the upstream MQTT connection."""

    def __init__(self, config: GatewayConfig, clock: Clock, *, maxsize: int = 10_000) -> None:
        if config.upstream is None:
            raise ValueError("UpstreamPublisher needs an 'upstream' section in the config")
        self._site = config.site
        self._upstream = config.upstream
        broker = config.brokers[config.upstream.broker]
        self.base = f"{config.upstream.topic_prefix.rstrip('/')}/{config.site.id}"
        self._queue: asyncio.PriorityQueue[OutgoingMessage] = asyncio.PriorityQueue(maxsize)
        self._seq = itertools.count()
        self._in_flight: OutgoingMessage | None = None
        self.sent = 0
        self.session = MqttSession(
            "upstream", broker, clock=clock,
            client_id=broker.client_id or f"propgw-{config.site.gateway_id}-upstream",
            on_connected=self._serve,
            will=aiomqtt.Will(self.status_topic, self._status("offline"), qos=1, retain=True),
        )

    @property
    def status_topic(self) -> str:
        return f"{self.base}/gateway/status"

    @property
    def pending(self) -> int:
        return self._queue.qsize() + (1 if self._in_flight else 0)

    @property
    def connected(self) -> bool:
        return self.session.state is LinkState.CONNECTED

    async def publish(self, channel: str, payload: str, *, priority: str = "P3") -> None:
        """Queue a JSON ``payload`` for ``<base>/<channel>``; waits while the queue is full."""
        message = OutgoingMessage(_PRIORITY_RANK.get(priority, 3), next(self._seq),
                                  f"{self.base}/{channel}", payload.encode())
        await self._queue.put(message)

    async def run(self) -> None:
        await self.session.run()

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.publish(self.status_topic, self._status("online"), qos=1, retain=True,
                             timeout=_PUBLISH_TIMEOUT)
        try:
            while True:
                if self._in_flight is None:
                    self._in_flight = await self._queue.get()
                message = self._in_flight
                await client.publish(message.topic, message.payload, qos=self._upstream.qos,
                                     retain=message.retain, timeout=_PUBLISH_TIMEOUT)
                self._in_flight = None
                self.sent += 1
        except asyncio.CancelledError:
            # A clean stop sends no last will, so say "offline" ourselves; shielded and
            # time-boxed so a dead broker cannot hold up shutdown.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(_GOODBYE_TIMEOUT):
                    await asyncio.shield(client.publish(
                        self.status_topic, self._status("offline"), qos=1, retain=True))
            raise

    def _status(self, state: str) -> bytes:
        return json.dumps({"state": state, "site_id": self._site.id,
                           "gateway_id": self._site.gateway_id}).encode()
