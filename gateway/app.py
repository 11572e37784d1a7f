"""Composition root: builds every stage from the config and runs them in one TaskGroup.

::

    drivers ──Reading──▶ bus ──▶ AlarmEngine ──AlarmEvent──▶ WorkOrderDesk ──WorkOrder──┐
                                     │                            ▲                    ▼
                                     └──────────alarms─────────── │ ───────────▶ Outbox (SQLite)
                                                                  │                 │
                                                         status answers    UpstreamPublisher (MQTT)
                                                                  └──────── HttpPublisher, StatusApi

Only this module (and the CLI) knows every stage; the stages know only their neighbours'
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from drivers.base import Driver
from drivers.modbus import build_modbus_links
from drivers.mqtt import build_mqtt_drivers
from gateway.aio import first_of
from gateway.alarms import AlarmEngine, AlarmEvent
from gateway.bus import Bus, Overflow
from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, durable_state_dir
from gateway.health import HealthModel, HealthReport, JournalStatus
from gateway.liveness import Liveness
from gateway.outbox import DeliveryProgress, Outbox, OutboxItem
from gateway.readings import LastReadings
from gateway.sdnotify import notify
from gateway.supervisor import Supervisor
from gateway.upstream import UpstreamPublisher, alarm_message
from gateway.workorders import (
    StatusAnswer,
    WorkOrder,
    WorkOrderDesk,
    WorkOrderLog,
    work_order_log_path,
)

if TYPE_CHECKING:
    from gateway.console import ConsoleService
    from gateway.http_server import RouteOwner, WebServer
    from gateway.upstream import HttpPublisher

# aiohttp (HTTP upstream, the status API and console server) is imported only when the config
# uses it: a site with MQTT upstream only starts polling sooner (tests/test_startup.py).

__all__ = ["EXIT_FAILING", "Gateway", "Observer", "outbox_path", "wait_for_signals"]

log = logging.getLogger(__name__)

#: In-flight work gets this long after a shutdown request; then it is cancelled harder.
GRACE_PERIOD = 3.0
#: Exit status when the gateway stopped itself because its health was failing.
EXIT_FAILING = 3
#: Stages the alarm path depends on: the health model is stricter with them.
_CRITICAL = frozenset({"alarms", "workorders", "upstream", "upstream-http"})

_MQTT_CHANNELS = frozenset({"work-orders", "alarms", "telemetry"})


class Observer(Protocol):
    """Something that watches alarms and work orders as they happen (the demo's printer)."""

    def alarm(self, event: AlarmEvent) -> None: ...

    def work_order(self, order: WorkOrder) -> None: ...


def outbox_path(config: GatewayConfig, env: Mapping[str, str] | None = None) -> Path | None:
    """Where this gateway's outbox lives; None: nowhere durable was configured.

    ``upstream.outbox.path``, else under ``state_dir`` when the file sets it, else under
    ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``). The built-in ``state_dir``
    default is deliberately not used on its own: every test run and demo on a machine would
    then share (and replay) one outbox.
    """
    if config.upstream is not None and config.upstream.outbox.path is not None:
        return config.upstream.outbox.path
    state_dir = durable_state_dir(config, env)
    if state_dir is None:
        return None
    return state_dir / f"outbox-{config.site.id}-{config.site.gateway_id}.sqlite3"


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
        self.desk = WorkOrderDesk(config.site, self.clock, self._on_work_order,
                                  policies=config.work_orders)
        self.outbox: Outbox | None = None
        self.upstream: UpstreamPublisher | None = None
        self.http: HttpPublisher | None = None
        self.web: WebServer | None = None
        self.console: ConsoleService | None = None
        up = config.upstream
        if up is not None:
            targets: dict[str, frozenset[str]] = {}
            if up.broker is not None:
                targets["mqtt"] = _MQTT_CHANNELS
            if up.http is not None:
                targets["http"] = frozenset(
                    {"work-orders", *(["alarms"] if up.http.alarms_url else [])})
            path = outbox_path(config)
            if path is None:
                log.warning("no state_dir configured: the outbox is in memory, and work orders "
                            "not yet delivered are lost if the gateway stops")
            self.outbox = Outbox(path, targets=targets, clock=self.clock,
                                 max_messages=up.outbox.max_messages,
                                 max_bytes=int(up.outbox.max_bytes),
                                 snapshot_max_age=config.work_orders.forget_after)
            if up.broker is not None:
                self.upstream = UpstreamPublisher(config, self.clock, self.outbox,
                                                  on_answer=self._on_answer)
            if up.http is not None:
                from gateway.upstream import HttpPublisher

                self.http = HttpPublisher(up.http, self.clock, self.outbox)
        self.engine = AlarmEngine(config, self.clock, self._on_alarm,
                                  listener=self._on_alarm_event)
        self._alarm_feed = self.bus.subscribe("alarms", maxsize=10_000, overflow=Overflow.BLOCK)
        #: Every version of every work order, for people (the console); never in the way of
        #: delivery: record() only queues.
        self.worklog = WorkOrderLog(work_order_log_path(config), clock=self.clock)
        #: The last reading of every point, for people; a slow view drops, never blocks.
        self.readings = LastReadings()
        self._readings_feed = self.bus.subscribe("readings", maxsize=1000,
                                                 overflow=Overflow.DROP_OLDEST)
        self.supervisor = Supervisor(self.clock)
        progress: dict[str, DeliveryProgress] = {}
        if self.upstream is not None:
            progress["mqtt"] = self.upstream.progress
        if self.http is not None:
            progress["http"] = self.http.progress
        self.health_model = HealthModel(
            config.health, self.clock, self.supervisor, outbox=self.outbox, targets=progress,
            drivers=self.drivers, alarm_feed=self._alarm_feed, journal=self._journal_status,
            worklog=self.worklog.health)
        self.liveness = Liveness(self.health_model, self.clock, on_failing=self._failing,
                                 interval=config.health.check_every)
        self._build_web_server()
        #: 0 after a requested stop; :data:`EXIT_FAILING` when the health made it stop.
        self.exit_code = 0
        self._give_up = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self, shutdown_trigger: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run until ``shutdown_trigger()`` returns (default: SIGTERM or SIGINT)."""
        trigger = shutdown_trigger or wait_for_signals
        async with contextlib.AsyncExitStack() as stack:
            # Open before anything can raise a work order: the desk records every version.
            await stack.enter_async_context(self.worklog)
            if self.outbox is not None:
                # Open (and load what a previous run left unsent) before anything can raise
                # a work order: durability before delivery.
                await stack.enter_async_context(self.outbox)
                self.desk.restore(_orders(self.outbox.snapshots))
            await self._run_stages(trigger)
        log.info("stopped")

    async def _run_stages(self, trigger: Callable[[], Awaitable[None]]) -> None:
        async with asyncio.TaskGroup() as tg:
            stages: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                *((d.name, _runner(d, self.bus)) for d in self.drivers),
                ("alarms", lambda: self.engine.run(self._alarm_feed)),
                ("workorders", self.desk.run),
                ("readings", lambda: self.readings.run(self._readings_feed)),
            ]
            if self.upstream is not None:
                stages.append(("upstream", self.upstream.run))
            if self.http is not None:
                stages.append(("upstream-http", self.http.run))
            if self.web is not None:
                stages.append(("http", self.web.run))
            stages.append(("liveness", self.liveness.run))
            # Supervised stages never raise but CancelledError, so this group is only ever
            # ended by the cancellations below, after supervisor.stop().
            tasks = [tg.create_task(self.supervisor.run(name, stage, critical=name in _CRITICAL),
                                    name=f"{name}.run")
                     for name, stage in stages]
            stop = asyncio.ensure_future(trigger())
            try:
                # Let the trigger install its signal handlers before anyone is told we run: a
                # SIGTERM sent on reading "running" must be a clean stop, not a kill.
                await asyncio.sleep(0)
                log.info("gateway %s/%s running: %d driver(s), %d rule(s)",
                         self.config.site.id, self.config.site.gateway_id, len(self.drivers),
                         len(self.config.rules))
                notify("READY=1")
                self.started.set()
                await first_of(stop, self._give_up.wait())
            finally:
                stop.cancel()
                log.info("shutting down")
                notify("STOPPING=1")
                self.supervisor.stop()
                for task in tasks:
                    task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=GRACE_PERIOD)
            for task in stuck:
                log.warning("%s did not stop within %.0fs; cancelling again (it waits in %s)",
                            task.get_name(), GRACE_PERIOD, _waits_in(task))
                task.cancel()

    def health(self) -> dict[str, Any]:
        """The health report as JSON-able data (status API, console), with the outbox, link
        and parked-message counters kept under their former keys."""
        out = self.health_model.report().to_json()
        if self.upstream is not None:
            out["mqtt"] = {"connected": self.upstream.connected, "sent": self.upstream.sent,
                           "last_error": self.upstream.session.last_error}
        if self.http is not None:
            out["http"] = {"sent": self.http.sent, "retries": self.http.retries,
                           "last_error": self.http.last_error}
        return out

    def health_report(self) -> HealthReport:
        """The gateway's health now (see :mod:`gateway.health`)."""
        return self.health_model.report()

    def _build_web_server(self) -> None:
        up = self.config.upstream
        console = self.config.console
        if (up is None or up.status_api is None) and (console is None or not console.enabled):
            return  # nothing to serve (listen_settings would say None): no aiohttp server
        from gateway.http_server import WebServer, listen_settings
        from gateway.upstream import PlatformEndpoint

        listen = listen_settings(self.config)
        if listen is None:
            return
        owners: list[RouteOwner] = []
        if up is not None and up.status_api is not None:
            owners.append(PlatformEndpoint(up.status_api.token.get_secret_value(),
                                           self._on_answer, health=self.health))
        if console is not None and console.enabled:
            # Imported only when the console is on: a gateway without it loads none of it.
            from gateway.console import Backend, ConsoleRoutes, ConsoleService, users_path

            self.console = ConsoleService(Backend(
                config=self.config, clock=self.clock, book=self.engine.book,
                actions=self.engine.actions, desk=self.desk, worklog=self.worklog,
                readings=self.readings, links=lambda: [d.health() for d in self.drivers],
                health=self.health_report, on_answer=self._on_answer), users_path(self.config))
            owners.append(ConsoleRoutes(self.console))
        service = self.console
        self.web = WebServer(listen, owners=owners, health=self.health_report,
                             on_start=service.open if service else None,
                             on_stop=service.close if service else None)

    async def _on_alarm_event(self, event: AlarmEvent) -> None:
        if self.console is not None:
            self.console.alarm_event(event)

    def _failing(self, report: HealthReport) -> None:
        if not self.config.health.exit_on_failing:
            return
        log.critical("stopping with exit status %d so that a fresh process takes over",
                     EXIT_FAILING)
        self.exit_code = EXIT_FAILING
        self._give_up.set()

    def _journal_status(self) -> JournalStatus:
        journal = self.engine.book.journal
        return JournalStatus(path=journal.name, durable=journal.path is not None,
                             error=self.engine.book.journal_error,
                             replaced=None if journal.replaced is None else str(journal.replaced))

    async def _on_alarm(self, event: AlarmEvent) -> None:
        for obs in self.observers:
            obs.alarm(event)
        up = self.config.upstream
        if self.outbox is not None and up is not None and up.alarms:
            message = alarm_message(self.config.site, event)
            await self.outbox.put(OutboxItem(
                kind="alarm", channel="alarms", priority=event.priority,
                key=f"{event.alarm_id}:{event.state.value}:{event.ts:.3f}",
                payload=message.model_dump_json().encode()))
        await self.desk.handle(event)

    async def _on_work_order(self, order: WorkOrder) -> None:
        await self.worklog.record(order)
        for obs in self.observers:
            obs.work_order(order)
        if self.console is not None:
            self.console.work_order(order)
        if self.outbox is not None:
            body = order.model_dump_json()
            await self.outbox.put(OutboxItem(
                kind="work_order", channel="work-orders", priority=order.priority,
                key=f"{order.id}:{order.seq}", payload=body.encode(),
                snapshot=(order.id, body, self.desk.tracks(order.id))))

    async def _on_answer(self, order_id: str, answer: StatusAnswer) -> WorkOrder | None:
        return await self.desk.apply_status(order_id, answer)


def _waits_in(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended, outermost first: for the log line of a stage that will not
    stop. (Task.get_stack() shows only the outermost frame of a suspended coroutine; the
    chain of awaits is walked instead.)"""
    where: list[str] = []
    current: Any = task.get_coro()
    while current is not None and len(where) < 30:
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None) \
            or getattr(current, "ag_frame", None)
        if frame is None:
            where.append(type(current).__name__)
            break
        where.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} "
                     f"{frame.f_code.co_name}")
        current = getattr(current, "cr_await", None) or getattr(current, "gi_yieldfrom", None) \
            or getattr(current, "ag_await", None)
    return " > ".join(where) or "?"


def _orders(snapshots: Sequence[str]) -> list[WorkOrder]:
    orders = []
    for body in snapshots:
        try:
            orders.append(WorkOrder.model_validate_json(body))
        except ValidationError as exc:
            log.warning("outbox: a saved work order cannot be read and is skipped: %s", exc)
    return orders


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
