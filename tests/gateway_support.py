"""A real gateway on the fake clock with a platform listening on its upstream broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from gateway.app import Gateway, Observer
from gateway.clock import FakeClock
from gateway.config import GatewayConfig


@asynccontextmanager
async def gateway_with_platform(config: GatewayConfig, port: int, clock: FakeClock, *,
                                topic: str) -> AsyncIterator[tuple[Gateway, list[dict[str, Any]]]]:
    """Run ``config`` until the block ends; every message on ``topic`` (the platform's side of
    the upstream broker on ``port``) is appended, decoded, to the list yielded with it."""
    received: list[dict[str, Any]] = []
    async with gateway_on_platform(
            config, port, clock, topics=[topic],
            received=lambda _topic, payload: received.append(json.loads(payload))) as gateway:
        yield gateway, received


@asynccontextmanager
async def gateway_on_platform(config: GatewayConfig, port: int, clock: FakeClock, *,
                              topics: Sequence[str], received: Callable[[str, bytes], None],
                              observers: Sequence[Observer] = (),
                              subscribed: bool = False) -> AsyncIterator[Gateway]:
    """Run ``config`` until the block ends, yielded once started, its console (if it has
    one) serving and its upstream connected; with ``subscribed``, also once its first driver
    has subscribed. Every message on ``topics`` (the platform's side of the upstream broker
    on ``port``) is handed to ``received(topic, payload)`` as it arrives."""
    gateway = Gateway(config, clock=clock, observers=observers)

    def ready() -> bool:
        return (gateway.upstream is not None and gateway.upstream.connected
                and (not subscribed or drivers_subscribed(gateway)))

    async with aiomqtt.Client("127.0.0.1", port) as platform, asyncio.TaskGroup() as tg:
        for topic in topics:
            await platform.subscribe(topic, qos=1)

        async def listen() -> None:
            async for message in platform.messages:
                assert isinstance(message.payload, bytes)
                received(str(message.topic), message.payload)

        listener = tg.create_task(listen())
        try:
            async with running_gateway(gateway, ready):
                yield gateway
        finally:
            listener.cancel()


@asynccontextmanager
async def running_gateway(gateway: Gateway, ready: Callable[[], bool] = lambda: True
                          ) -> AsyncIterator[Gateway]:
    """Run ``gateway`` until the block ends, yielded once started, its console (if it has
    one) serving and ``ready()`` true (each waited for in real time, bounded)."""
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(gateway.run(shutdown_trigger=stop.wait))
        try:
            async with asyncio.timeout(10):
                await gateway.started.wait()
                if gateway.web is not None:
                    await gateway.web.serving.wait()
                while not ready():
                    await asyncio.sleep(0.01)
            yield gateway
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task


def drivers_subscribed(gateway: Gateway, topics: int = 1) -> bool:
    """Whether the gateway's first driver has subscribed to ``topics`` topics."""
    return gateway.drivers[0].health().counters.get("subscribed", 0) >= topics


async def advance_delivered(gateway: Gateway, clock: FakeClock, seconds: float,
                            step: float) -> None:
    """Fake time forward ``step`` at a time, each once the outbox has delivered everything:
    a jump while a publish waits for its PUBACK would time it out on the fake clock."""
    outbox = gateway.outbox
    assert outbox is not None
    while seconds > 0:
        await until(lambda: not outbox.pending("mqtt"), clock)
        await clock.advance(min(step, seconds))
        seconds -= step


async def until(check: Callable[[], bool], clock: FakeClock) -> None:
    """Wait (real time, bounded) until ``check()`` holds, letting the fake clock's sleepers
    run."""
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)
            await clock.advance(0)


@asynccontextmanager
async def probed_gateway(config: GatewayConfig, port: int, clock: FakeClock
                         ) -> AsyncIterator[tuple[RuleProbe, list[dict[str, Any]]]]:
    """:func:`gateway_with_platform` on the work-order topic ``pm/s1/work-orders``, with a
    :class:`RuleProbe` publishing as the devices on the same broker; yields the probe and the
    orders the platform received."""
    async with gateway_with_platform(config, port, clock, topic="pm/s1/work-orders") as (
            gateway, orders), aiomqtt.Client("127.0.0.1", port) as devices:
        yield RuleProbe(gateway, devices, clock), orders


class RuleProbe:
    """Publishes device messages and waits until the rules have judged each of them."""

    def __init__(self, gateway: Gateway, device_client: aiomqtt.Client,
                 clock: FakeClock) -> None:
        self.rules = gateway.engine.rules
        self._client = device_client
        self._clock = clock

    def active(self) -> set[str]:
        """Ids of the alarms whose condition holds now."""
        return {d.alarm_id for d in self.rules.active()}

    async def publish(self, topic: str, payload: str, judged: int) -> None:
        """Publish; wait until the rules judged it ``judged`` times and the lock is free."""
        before = self.rules.evaluations
        await self._client.publish(topic, payload, qos=1)
        await until(lambda: self.rules.evaluations >= before + judged, self._clock)
        async with self.rules._lock:  # the last judgement (and its detection) is complete
            pass
