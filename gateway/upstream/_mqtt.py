"""Publishes the outbox to the platform's MQTT broker and takes the platform's answers back.

Topics, under ``<topic_prefix>/<site id>/``:

* ``work-orders``: work orders and their updates (QoS 1, JSON, see ``docs/upstream.md``);
* ``alarms``: every alarm transition;
* ``telemetry/<device>``: readings reported by exception (outbox channel ``telemetry/<device>``);
* ``work-orders/<id>/status``: the platform's answers (acknowledged, on_site, resolved,
  rejected), subscribed by the gateway;
* ``gateway/status``: retained ``online`` on connect, and ``offline`` as the last will, so the
  platform sees a dead gateway.

Messages come from the durable outbox, life-safety first. One message is in flight at a time and
leaves the outbox only once the broker has acknowledged it (PUBACK); a broken connection sends it
again on the next one, so delivery is at least once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import aiomqtt
from pydantic import ValidationError

from gateway.aio import raise_if_cancelling, task_group
from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.errors import StatusRefused
from gateway.mqtt_client import LinkState, MqttSession
from gateway.outbox import DeliveryProgress, Outbox
from gateway.upstream._contract import GatewayStatus
from gateway.workorders import StatusAnswer

__all__ = ["AnswerHandler", "UpstreamPublisher"]

log = logging.getLogger(__name__)

#: Receives ``(work-order id, answer)`` from the platform.
AnswerHandler = Callable[[str, StatusAnswer], Awaitable[object]]

TARGET = "mqtt"
CHANNELS = frozenset({"work-orders", "alarms", "telemetry"})
_PUBLISH_TIMEOUT = 10.0
_SUBSCRIBE_TIMEOUT = 10.0
_GOODBYE_TIMEOUT = 1.0


class UpstreamPublisher:
    """Owns the upstream MQTT connection.

    Args:
        config: The gateway config; needs ``upstream.broker``.
        clock: For the reconnect back-off.
        outbox: Where the messages to publish wait (target ``"mqtt"``).
        on_answer: Called with each status answer the platform publishes.

    Raises:
        ValueError: the config has no upstream broker.
    """

    def __init__(self, config: GatewayConfig, clock: Clock, outbox: Outbox, *,
                 on_answer: AnswerHandler | None = None) -> None:
        if config.upstream is None or config.upstream.broker is None:
            raise ValueError("UpstreamPublisher needs 'upstream.broker' in the config")
        self._site = config.site
        self._upstream = config.upstream
        self._outbox = outbox
        self._on_answer = on_answer
        broker = config.brokers[config.upstream.broker]
        self.base = f"{config.upstream.topic_prefix.rstrip('/')}/{config.site.id}"
        self._clock = clock
        #: What the health model reads: link state, last attempt and delivery.
        self.progress = DeliveryProgress(connected=False)
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
    def answers_topic(self) -> str:
        return f"{self.base}/work-orders/+/status"

    @property
    def pending(self) -> int:
        """Messages the outbox still holds for this publisher."""
        return self._outbox.pending(TARGET)

    @property
    def connected(self) -> bool:
        return self.session.state is LinkState.CONNECTED

    @property
    def sent(self) -> int:
        """Messages the broker has acknowledged since start."""
        return self.progress.sent

    async def run(self) -> None:
        """Connect, publish, reconnect; until cancelled."""
        self.progress.attempt(self._clock.monotonic())
        await self.session.run()

    async def _serve(self, client: aiomqtt.Client) -> None:
        if self._on_answer is not None:
            await client.subscribe(self.answers_topic, qos=1, timeout=_SUBSCRIBE_TIMEOUT)
        await client.publish(self.status_topic, self._status("online"), qos=1, retain=True,
                             timeout=_PUBLISH_TIMEOUT)
        raise_if_cancelling()
        self.progress.connected = True
        self.progress.attempt(self._clock.monotonic())
        try:
            await self._send_and_receive(client)
        except asyncio.CancelledError:
            # A clean stop sends no last will, so say "offline" ourselves; shielded and
            # time-boxed so a dead broker cannot hold up shutdown.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(_GOODBYE_TIMEOUT):
                    await asyncio.shield(client.publish(
                        self.status_topic, self._status("offline"), qos=1, retain=True))
            raise
        finally:
            self.progress.connected = False

    async def _send_and_receive(self, client: aiomqtt.Client) -> None:
        try:
            async with task_group() as tg:
                tg.create_task(self._send(client), name="upstream.mqtt.send")
                if self._on_answer is not None:
                    tg.create_task(self._receive(client), name="upstream.mqtt.answers")
        except* aiomqtt.MqttError as group:
            # The session reconnects on MqttError; hand it the first one, unwrapped.
            raise group.exceptions[0] from None

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            env = await self._outbox.next(TARGET)
            self.progress.attempt(self._clock.monotonic())
            # Returns after PUBACK (QoS 1) / PUBCOMP (QoS 2); raises MqttError otherwise.
            await client.publish(f"{self.base}/{env.channel}", env.payload,
                                 qos=self._upstream.qos, timeout=_PUBLISH_TIMEOUT)
            # Acknowledged even if a cancellation raced it: record it, then honour the cancel.
            self._outbox.delivered(TARGET, env)
            self.progress.delivered(self._clock.monotonic())
            raise_if_cancelling()

    async def _receive(self, client: aiomqtt.Client) -> None:
        assert self._on_answer is not None
        async for message in client.messages:
            topic = str(message.topic)
            parts = topic.removeprefix(f"{self.base}/").split("/")
            if len(parts) != 3 or parts[0] != "work-orders" or parts[2] != "status":
                continue
            order_id = parts[1]
            payload = message.payload
            if not isinstance(payload, bytes | str):
                log.warning("upstream: ignoring an answer without payload on %s", topic)
                continue
            try:
                answer = StatusAnswer.model_validate_json(payload)
            except ValidationError as exc:
                log.warning("upstream: ignoring malformed answer on %s: %s", topic,
                            str(exc).replace("\n", " "))
                continue
            if answer.id is not None and answer.id != order_id:
                log.warning("upstream: answer on %s names another order (%s); ignored", topic,
                            answer.id)
                continue
            try:
                await self._on_answer(order_id, answer)
            except StatusRefused:
                continue  # the desk said why, at WARNING; MQTT has no one to answer to
            except Exception:
                log.exception("upstream: answer %s for %s could not be applied", answer.status,
                              order_id)

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        return GatewayStatus(state=state, site_id=self._site.id,
                             gateway_id=self._site.gateway_id).model_dump_json().encode()
