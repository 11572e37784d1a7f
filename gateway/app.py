"""Composition root: builds every stage from the config and runs them in one TaskGroup.

::

    drivers ──Reading──▶ bus ──▶ AlarmEngine ──AlarmEvent──▶ WorkOrderDesk ──WorkOrder──┐
                                                  │                                     ▼
                                                  └──────────────alarms──────────▶ UpstreamPublisher

Only this module (and the CLI) knows every stage; the stages know only their neighbours'
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from drivers.base import Driver
from drivers.modbus import build_modbus_links
from drivers.mqtt import build_mqtt_drivers
from gateway.alarms import AlarmEngine, AlarmEvent
from gateway.bus import Bus, Overflow
from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig
from gateway.sdnotify import notify, watchdog
from gateway.supervisor import supervise
from gateway.upstream import UpstreamPublisher, alarm_message
from gateway.workorders import WorkOrder, WorkOrderDesk

__all__ = ["Gateway", "Observer", "wait_for_signals"]

log = logging.getLogger(__name__)

#: In-flight work gets this long after a shutdown request; then it is cancelled harder.
GRACE_PERIOD = 3.0


class Observer(Protocol):
    """Something that watches alarms and work orders as they happen (the demo's printer)."""

    def alarm(self, event: AlarmEvent) -> None: ...

    def work_order(self, order: WorkOrder) -> None: ...


class Gateway:
    """The whole gateway for one site."""

    def __init__(self, config: GatewayConfig, *, clock: Clock | None = None,
                 observers: Sequence[Observer] = ()) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.observers = list(observers)
        self.bus = Bus()
        self.drivers: list[Driver] = [*build_modbus_links(config.devices, self.clock),
                                      *build_mqtt_drivers(config, self.clock)]
        self.upstream = UpstreamPublisher(config, self.clock) if config.upstream else None
        self.desk = WorkOrderDesk(config.site, self.clock, self._on_work_order)
        self.engine = AlarmEngine(config, self.clock, self._on_alarm)
        self._alarm_feed = self.bus.subscribe("alarms", maxsize=10_000, overflow=Overflow.BLOCK)
        self.started = asyncio.Event()

    async def run(self, shutdown_trigger: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run until ``shutdown_trigger()`` returns (default: SIGTERM or SIGINT)."""
        trigger = shutdown_trigger or wait_for_signals
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(supervise(f"{d.name}", _runner(d, self.bus), self.clock),
                                    name=f"{d.name}.run") for d in self.drivers]
            tasks.append(tg.create_task(
                supervise("alarms", lambda: self.engine.run(self._alarm_feed), self.clock),
                name="alarms.run"))
            if self.upstream is not None:
                tasks.append(tg.create_task(supervise("upstream", self.upstream.run, self.clock),
                                            name="upstream.run"))
            tasks.append(tg.create_task(watchdog(self.clock), name="systemd.watchdog"))
            log.info("gateway %s/%s running: %d driver(s), %d rule(s)", self.config.site.id,
                     self.config.site.gateway_id, len(self.drivers), len(self.config.rules))
            notify("READY=1")
            self.started.set()
            await trigger()
            log.info("shutting down")
            notify("STOPPING=1")
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=GRACE_PERIOD)
            for task in stuck:
                log.warning("%s did not stop within %.0fs; cancelling again", task.get_name(),
                            GRACE_PERIOD)
                task.cancel()
        log.info("stopped")

    async def _on_alarm(self, event: AlarmEvent) -> None:
        for obs in self.observers:
            obs.alarm(event)
        if self.upstream is not None:
            await self.upstream.publish("alarms",
                                        alarm_message(self.config.site, event).model_dump_json(),
                                        priority=event.priority)
        await self.desk.handle(event)

    async def _on_work_order(self, order: WorkOrder) -> None:
        for obs in self.observers:
            obs.work_order(order)
        if self.upstream is not None:
            await self.upstream.publish("work-orders", order.model_dump_json(),
                                        priority=order.priority)


async def wait_for_signals() -> None:
    """Return on the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


def _runner(driver: Driver, bus: Bus) -> Callable[[], Awaitable[None]]:
    return lambda: driver.run(bus.publish)
