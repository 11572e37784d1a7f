"""A stand-in for the property-management platform that answers work orders on cue.

A scenario's ``platform:`` list scripts what the platform's people do with the orders the gateway
raises: the control room acknowledges, the patrol reports on site, engineering resolves. The
player reads the work orders off the upstream broker, as the platform would, and publishes each
answer to ``<prefix>/<site>/work-orders/<id>/status`` at its scenario time, so a rehearsal (and
the demo) leaves a complete incident history: every window has a verdict in its review.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt

from gateway.clock import Clock
from simulators.scenario import PlatformAnswer

__all__ = ["ORDER_WAIT", "ScriptedPlatform"]

log = logging.getLogger(__name__)

#: Real seconds an answer waits for its work order to arrive upstream before it is dropped.
ORDER_WAIT = 30.0

#: Real seconds between attempts to reach the upstream broker.
_RETRY = 1.0
_POLL = 0.05


@dataclass
class ScriptedPlatform:
    """Plays ``answers`` against the gateway's upstream on ``host:port``.

    Args:
        base: The upstream topic base, ``<prefix>/<site>``.
        clock: The scenario's clock; ``t0`` is its monotonic time at the scenario's start.
        say: Told the scenario time and one line per answer (the demo's narration).
    """

    answers: list[PlatformAnswer]
    host: str
    port: int
    base: str
    clock: Clock
    t0: float
    say: Callable[[float, str], None] = lambda t, text: None
    #: Work-order ids seen upstream, by (rule id, device id), first order first.
    orders: dict[tuple[str, str], str] = field(default_factory=dict)

    async def run(self) -> None:
        """Until every answer is sent (or cancelled); reconnects when the broker drops."""
        if not self.answers:
            return
        pending = sorted(self.answers, key=lambda a: a.at)
        while pending:
            try:
                async with aiomqtt.Client(self.host, self.port,
                                          identifier="propgw-sim-platform") as client:
                    await client.subscribe(f"{self.base}/work-orders", qos=1)
                    async with asyncio.TaskGroup() as tg:
                        reader = tg.create_task(self._read(client), name="sim-platform.read")
                        await self._answer(client, pending)
                        reader.cancel()
            except* aiomqtt.MqttError as group:
                log.debug("scripted platform: %s; retrying", group.exceptions[0])
            if pending:
                await asyncio.sleep(_RETRY)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                order = json.loads(bytes(message.payload))
                if order.get("type") == "work_order":
                    key = (order["rule_id"], order["location"]["device"])
                    self.orders.setdefault(key, order["id"])

    async def _answer(self, client: aiomqtt.Client, pending: list[PlatformAnswer]) -> None:
        """Send each due answer once its order is known; ``pending`` shrinks as they go."""
        while pending:
            answer = pending[0]
            await self.clock.sleep_until(self.t0 + answer.at)
            order_id = await self._order_of(answer)
            t = self.clock.monotonic() - self.t0
            if order_id is None:
                self.say(t, f"platform: no work order of rule {answer.rule} on "
                            f"{answer.device} arrived within {ORDER_WAIT:g} s; answer "
                            f"{answer.status} not sent")
            else:
                body = {"type": "work_order_status", "id": order_id, "status": answer.status,
                        "by": answer.by, "note": answer.note}
                await client.publish(f"{self.base}/work-orders/{order_id}/status",
                                     json.dumps(body, ensure_ascii=False), qos=1)
                self.say(t, f"platform: work order {order_id} {answer.status}"
                            f"{f' by {answer.by}' if answer.by else ''}")
            pending.pop(0)

    async def _order_of(self, answer: PlatformAnswer) -> str | None:
        """The order the answer is about; waits (bounded) for one not upstream yet."""
        for _ in range(int(ORDER_WAIT / _POLL)):
            order_id = self.orders.get((answer.rule, answer.device))
            if order_id is not None:
                return order_id
            await asyncio.sleep(_POLL)
        return None
