"""Harness shared by the MQTT simulator tests: a reading sink that can be waited on, and the
gateway's MQTT driver running against a simulator on a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import yaml

from drivers.mqtt import MqttDriver
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Reading
from simulators.mqtt_sim import MqttSim

WAIT = 5.0  # upper bound for any condition; they normally hold within a few 100 ms


def sim_site(port: int, devices: list[dict[str, Any]]) -> GatewayConfig:
    """A site of ``devices`` on the mosquitto at ``port``, reconnecting quickly; loaded as
    the gateway loads a site file (profiles and device templates expanded)."""
    data = {
        "site": {"id": "sunny", "name": "阳光花园", "gateway_id": "gw1"},
        "brokers": {"local": {"host": "127.0.0.1", "port": port, "connect_timeout": 2,
                              "reconnect": {"initial": 0.05, "max": 0.2}}},
        "devices": devices,
    }
    return load_config_text(yaml.safe_dump(data, allow_unicode=True))


class Sink:
    """Collects readings; waits re-check their condition on every new reading."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self._changed = asyncio.Event()

    async def __call__(self, readings: Sequence[Reading], *, urgent: bool = False) -> None:
        self.readings.extend(readings)
        self._changed.set()

    def latest(self, device: str, point: str) -> Reading | None:
        return next((r for r in reversed(self.readings)
                     if r.device == device and r.point == point), None)

    async def until(self, condition: Callable[[], bool],
                    what: str | Callable[[], str] = "condition") -> None:
        """Wait for ``condition``; ``what`` (or what it returns, at the timeout) explains."""
        try:
            async with asyncio.timeout(WAIT):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out waiting for {text}") from None

    async def next(self, device: str, point: str,
                   check: Callable[[Reading], bool] = lambda r: True, *,
                   since: int | None = None) -> Reading:
        """The first reading of ``device.point`` that passes ``check``.

        Only readings from index ``since`` on count (default: those not collected yet).
        """
        start = len(self.readings) if since is None else since

        def found() -> Reading | None:
            return next((r for r in self.readings[start:] if r.device == device
                         and r.point == point and check(r)), None)

        await self.until(lambda: found() is not None, f"a new {device}.{point} reading")
        reading = found()
        assert reading is not None
        return reading

    async def value(self, device: str, point: str, value: Any) -> Reading:
        """Wait until the latest reading of ``device.point`` is GOOD and equals ``value``."""
        def ok() -> bool:
            r = self.latest(device, point)
            return r is not None and r.good and r.value == value

        await self.until(ok, lambda: f"{device}.{point} == {value!r} "
                                     f"(latest: {self.latest(device, point)})")
        reading = self.latest(device, point)
        assert reading is not None
        return reading


async def wait_until(condition: Callable[[], bool], what: str = "condition") -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@contextlib.asynccontextmanager
async def driver_and_sim(driver: MqttDriver, sim: MqttSim) -> AsyncIterator[Sink]:
    """Run both until the block ends; the driver is subscribed when the block starts."""
    sink = Sink()
    tasks = [asyncio.create_task(driver.run(sink), name="test-driver"),
             asyncio.create_task(sim.run(), name="test-sim")]
    try:
        await wait_until(lambda: driver.health().counters["subscribed"] >= 1, "subscription")
        yield sink
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert all(t.cancelled() for t in tasks), "nothing may swallow cancellation"
