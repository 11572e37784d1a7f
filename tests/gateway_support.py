"""A real gateway on the fake clock with a platform listening on its upstream broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import GatewayConfig


@asynccontextmanager
async def gateway_with_platform(config: GatewayConfig, port: int, clock: FakeClock, *,
                                topic: str) -> AsyncIterator[tuple[Gateway, list[dict[str, Any]]]]:
    """Run ``config`` until the block ends; every message on ``topic`` (the platform's side of
    the upstream broker on ``port``) is appended, decoded, to the list yielded with it."""
    gateway = Gateway(config, clock=clock)
    stop = asyncio.Event()
    received: list[dict[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", port) as platform, asyncio.TaskGroup() as tg:
        await platform.subscribe(topic, qos=1)
        task = tg.create_task(gateway.run(shutdown_trigger=stop.wait))

        async def listen() -> None:
            async for message in platform.messages:
                assert isinstance(message.payload, bytes)
                received.append(json.loads(message.payload))

        listener = tg.create_task(listen())
        try:
            async with asyncio.timeout(10):
                await gateway.started.wait()
                while not (gateway.upstream is not None and gateway.upstream.connected):
                    await asyncio.sleep(0.01)
            yield gateway, received
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task
            listener.cancel()


async def until(check: Callable[[], bool], clock: FakeClock) -> None:
    """Wait (real time, bounded) until ``check()`` holds, letting the fake clock's sleepers
    run."""
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)
            await clock.advance(0)


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
