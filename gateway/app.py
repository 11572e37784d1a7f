"""Composition root: builds every stage from the config and runs them in one TaskGroup.

::

    drivers ──Reading──▶ bus ──▶ AlarmEngine ──AlarmEvent──▶ WorkOrderDesk ──WorkOrder──┐
                                     │                            ▲                    ▼
                                     └──────────alarms─────────── │ ───────────▶ Outbox (SQLite)
                                                                  │                 │
                                                         status answers    UpstreamPublisher (MQTT)
                                                                  └──────── HttpPublisher, StatusApi

Drivers publish to the bus through a :class:`~gateway.points.PointStage`, which adds the
devices' derived points and expired event values to the stream.

Only this module (and the CLI) knows every stage; the stages know only their neighbours'
messages.

SIGHUP reloads the config file (see :mod:`gateway.reload` for what a reload may change): the
new file is loaded and checked first, then device links that changed are replaced and the alarm
engine takes the new rules in place, keeping every alarm's state, the work orders and the
outbox. Any mistake leaves the running config as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from drivers.base import Driver, ReadingSink
from drivers.modbus import build_modbus_links
from drivers.mqtt import build_mqtt_drivers
from gateway import heap
from gateway.aio import first_of
from gateway.alarms import AlarmEngine, AlarmEvent
from gateway.bus import Bus, Overflow, Subscription
from gateway.clock import Clock, SystemClock
from gateway.config import GatewayConfig, MetricsConfig, durable_state_dir, load_config
from gateway.errors import ConfigError, ConfigProblem, WorkOrderLogError
from gateway.health import HealthModel, HealthReport, JournalStatus
from gateway.liveness import Liveness
from gateway.outbox import DeliveryProgress, Outbox, OutboxItem
from gateway.points import PointStage
from gateway.readings import LastReadings
from gateway.reload import driver_inputs, restart_only_changes
from gateway.sdnotify import notify, notify_reloading
from gateway.supervisor import Supervisor
from gateway.upstream import alarm_message
from gateway.workorders import (
    StatusAnswer,
    WorkOrder,
    WorkOrderDesk,
    WorkOrderLog,
    shareable,
    work_order_log_path,
)

if TYPE_CHECKING:
    from gateway.accounting import Accounting
    from gateway.console import ConsoleService
    from gateway.http_server import RouteOwner, WebServer
    from gateway.influx import InfluxWriter
    from gateway.metrics import GatewayCollector, LoopLagSampler
    from gateway.telemetry import TelemetryStage
    from gateway.upstream import HttpPublisher, UpstreamPublisher

# Each library is imported only when the config uses it (tests/test_lazy_imports.py): aiohttp
# for the HTTP upstream, the status API, the console and /metrics; aiomqtt for MQTT devices or
# an MQTT upstream; pymodbus for Modbus devices; the InfluxDB client for `influxdb:`.

__all__ = ["EXIT_FAILING", "Gateway", "Observer", "influx_buffer_path", "outbox_path",
           "wait_for_signals"]

log = logging.getLogger(__name__)

#: In-flight work gets this long after a shutdown request; then it is cancelled harder.
GRACE_PERIOD = 3.0
#: Exit status when the gateway stopped itself because its health was failing.
EXIT_FAILING = 3
#: Stages the alarm path depends on: the health model is stricter with them.
_CRITICAL = frozenset({"alarms", "points", "workorders", "upstream", "upstream-http"})

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


def influx_buffer_path(config: GatewayConfig, env: Mapping[str, str] | None = None
                       ) -> Path | None:
    """Where batches wait while InfluxDB is away; None: in memory (no durable state dir)."""
    state_dir = durable_state_dir(config, env)
    if state_dir is None:
        return None
    return state_dir / f"influx-buffer-{config.site.id}-{config.site.gateway_id}.sqlite3"


class Gateway:
    """The whole gateway for one site.

    Args:
        config: The site config.
        clock: Default: the system clock.
        observers: Watch alarms and work orders as they happen.
        config_path: The file ``config`` was loaded from: SIGHUP reloads it (see
            :meth:`reload`). None: SIGHUP is left alone.
    """

    def __init__(self, config: GatewayConfig, *, clock: Clock | None = None,
                 observers: Sequence[Observer] = (), config_path: Path | None = None,
                 freeze_heap: bool = False) -> None:
        self.config = config
        #: Freeze what start built out of the garbage collector's passes once running, and
        #: again after a reload (see gateway.heap); the ``propgw run`` process only.
        self.freeze_heap = freeze_heap
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.observers = list(observers)
        self.bus = Bus()
        self.drivers: list[Driver] = _build_drivers(config, self.clock)
        self._driver_inputs = driver_inputs(config, self.drivers)
        #: Supervised stage tasks by name, while the stages run.
        self._stage_tasks: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._reload_wanted = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        #: Config reloads applied since start.
        self.reloads = 0
        #: Drivers publish through it: derived points and expired event values join there.
        self.points = PointStage(config.devices, self.clock, self.bus.publish)
        self.desk = WorkOrderDesk(config.site, self.clock, self._on_work_order,
                                  policies=config.work_orders)
        self.outbox: Outbox | None = None
        self.upstream: UpstreamPublisher | None = None
        self.http: HttpPublisher | None = None
        self.web: WebServer | None = None
        self.console: ConsoleService | None = None
        #: The /metrics collector (``metrics:`` on); other stages add their sources to it.
        self.metrics: GatewayCollector | None = None
        self.loop_lag: LoopLagSampler | None = None
        self._build_upstream(config)
        self.engine = AlarmEngine(config, self.clock, self._on_alarm,
                                  listener=self._on_alarm_event)
        self._alarm_feed = self.bus.subscribe("alarms", maxsize=10_000, overflow=Overflow.BLOCK)
        #: Every version of every work order, for people (the console); never in the way of
        #: delivery: record() only queues.
        self.worklog = WorkOrderLog(work_order_log_path(config), clock=self.clock)
        #: The last reading of every point, for people; fed inline by the bus (a few
        #: dictionary updates per reading: cheaper than a queue and a task wake-up).
        self.readings = LastReadings()
        self.readings.attach(self.bus)
        #: Consumption per interval, when the config has an accounting: section.
        self.accounting, self._accounting_feed = self._build_accounting(config)
        self._build_history(config)
        self.supervisor = Supervisor(self.clock)
        progress: dict[str, DeliveryProgress] = {}
        if self.upstream is not None:
            progress["mqtt"] = self.upstream.progress
        if self.http is not None:
            progress["http"] = self.http.progress
        self._progress = progress
        self.health_model = HealthModel(
            config.health, self.clock, self.supervisor, outbox=self.outbox, targets=progress,
            drivers=self.drivers, alarm_feed=self._alarm_feed, journal=self._journal_status,
            worklog=self.worklog.health,
            influx=self.influx.status if self.influx is not None else None)
        self.liveness = Liveness(self.health_model, self.clock, on_failing=self._failing,
                                 interval=config.health.check_every)
        self._build_web_server()
        #: 0 after a requested stop; :data:`EXIT_FAILING` when the health made it stop.
        self.exit_code = 0
        self._give_up = asyncio.Event()
        self.started = asyncio.Event()

    def _build_history(self, config: GatewayConfig) -> None:
        """Readings into InfluxDB and upstream as telemetry, when configured: bus subscribers
        that drop their oldest readings rather than ever slow the alarm path."""
        #: Readings into InfluxDB (history), when configured; never in the alarm path.
        self.influx: InfluxWriter | None = None
        self._influx_feed: Subscription | None = None
        if config.influxdb is not None:
            if influx_buffer_path(config) is None:
                log.warning("no state_dir configured: readings waiting for InfluxDB are kept "
                            "in memory and lost if the gateway stops")
            from gateway.influx import InfluxWriter

            self.influx = InfluxWriter(config, self.clock, buffer_path=influx_buffer_path(config))
            self._influx_feed = self.bus.subscribe("influxdb", maxsize=config.influxdb.queue,
                                                   overflow=Overflow.DROP_OLDEST)
        #: Readings upstream by exception (``telemetry:``); its feed drops, never blocks.
        self.telemetry: TelemetryStage | None = None
        if config.telemetry is not None and config.telemetry.enabled and self.outbox is not None:
            from gateway.telemetry import TelemetryStage

            self.telemetry = TelemetryStage(
                config, self.clock, self.outbox,
                self.bus.subscribe("telemetry", maxsize=config.telemetry.queue,
                                   overflow=Overflow.DROP_OLDEST))

    def _build_accounting(self, config: GatewayConfig
                          ) -> tuple[Accounting | None, Subscription | None]:
        if config.accounting is None or not config.accounting.enabled:
            return None, None
        from gateway.accounting import Accounting, accounting_path

        # Drop-oldest: a stage that reads from and publishes to the bus must never wait on
        # its own queue, and a dropped register reading costs only resolution.
        return (Accounting(config, self.clock, self.bus.publish, path=accounting_path(config)),
                self.bus.subscribe("accounting", maxsize=10_000, overflow=Overflow.DROP_OLDEST))

    def _build_upstream(self, config: GatewayConfig) -> None:
        """The outbox and the publishers that drain it, when an upstream is configured."""
        up = config.upstream
        if up is not None:
            targets: dict[str, frozenset[str]] = {}
            if up.broker is not None:
                targets["mqtt"] = _MQTT_CHANNELS
            if up.http is not None:
                targets["http"] = frozenset(
                    {"work-orders", *(["alarms"] if up.http.alarms_url else []),
                     *(["telemetry"] if up.http.telemetry_url else [])})
            path = outbox_path(config)
            if path is None:
                log.warning("no state_dir configured: the outbox is in memory, and work orders "
                            "not yet delivered are lost if the gateway stops")
            self.outbox = Outbox(path, targets=targets, clock=self.clock,
                                 max_messages=up.outbox.max_messages,
                                 max_bytes=int(up.outbox.max_bytes),
                                 snapshot_max_age=config.work_orders.forget_after)
            if up.broker is not None:
                from gateway.upstream import UpstreamPublisher

                self.upstream = UpstreamPublisher(config, self.clock, self.outbox,
                                                  on_answer=self._on_answer)
            if up.http is not None:
                from gateway.upstream import HttpPublisher

                self.http = HttpPublisher(up.http, self.clock, self.outbox)

    async def run(self, shutdown_trigger: Callable[[], Awaitable[object]] | None = None) -> None:
        """Run until ``shutdown_trigger()`` returns (default: SIGTERM or SIGINT); what it
        returns is ignored, so ``asyncio.Event.wait`` will do."""
        trigger = shutdown_trigger or wait_for_signals
        async with contextlib.AsyncExitStack() as stack:
            # Open before anything can raise a work order: the desk records every version.
            await stack.enter_async_context(self.worklog)
            if self.outbox is not None:
                # Open (and load what a previous run left unsent) before anything can raise
                # a work order: durability before delivery.
                await stack.enter_async_context(self.outbox)
                self.desk.restore(await _with_contacts(_orders(self.outbox.snapshots),
                                                       self.worklog))
            await self._run_stages(trigger)
        log.info("stopped")

    async def _run_stages(self, trigger: Callable[[], Awaitable[object]]) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            stages: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                *((d.name, _runner(d, self.points.publish)) for d in self.drivers),
                # Always runs: a reload may give a device derived or expiring points.
                ("points", self.points.run),
                ("alarms", lambda: self.engine.run(self._alarm_feed)),
                ("workorders", self.desk.run),
            ]
            if self.accounting is not None and self._accounting_feed is not None:
                accounting, feed = self.accounting, self._accounting_feed
                stages.append(("accounting", lambda: accounting.run(feed)))
            if self.telemetry is not None:
                stages.append(("telemetry", self.telemetry.run))
            if self.upstream is not None:
                stages.append(("upstream", self.upstream.run))
            if self.http is not None:
                stages.append(("upstream-http", self.http.run))
            if self.web is not None:
                stages.append(("http", self.web.run))
            if self.influx is not None and self._influx_feed is not None:
                influx, feed = self.influx, self._influx_feed
                stages.append(("influxdb", lambda: influx.run(feed)))
            if self.loop_lag is not None:
                stages.append(("loop-lag", self.loop_lag.run))
            stages.append(("liveness", self.liveness.run))
            if self.config_path is not None:
                stages.append(("reload", self._reloader))
            # Supervised stages never raise but CancelledError, so this group is only ever
            # ended by the cancellations below, after supervisor.stop().
            for name, stage in stages:
                self._start_stage(name, stage)
            stop = asyncio.ensure_future(trigger())
            hup = self._catch_sighup()
            try:
                # Let the trigger install its signal handlers before anyone is told we run: a
                # SIGTERM sent on reading "running" must be a clean stop, not a kill.
                await asyncio.sleep(0)
                log.info("gateway %s/%s running: %d driver(s), %d rule(s)",
                         self.config.site.id, self.config.site.gateway_id, len(self.drivers),
                         len(self.config.rules))
                notify("READY=1")
                if self.freeze_heap:
                    heap.freeze()
                self.started.set()
                await first_of(stop, self._give_up.wait())
            finally:
                stop.cancel()
                log.info("shutting down")
                notify("STOPPING=1")
                self.supervisor.stop()
                if hup:
                    with contextlib.suppress(ValueError, RuntimeError):
                        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                tasks = list(self._stage_tasks.values())
                for task in tasks:
                    task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=GRACE_PERIOD)
            for task in stuck:
                log.warning("%s did not stop within %.0fs; cancelling again (it waits in %s)",
                            task.get_name(), GRACE_PERIOD, _waits_in(task))
                task.cancel()
        self._tg = None

    def _start_stage(self, name: str, stage: Callable[[], Awaitable[None]]) -> None:
        assert self._tg is not None
        task = self._tg.create_task(
            self.supervisor.run(name, stage, critical=name in _CRITICAL), name=f"{name}.run")
        self._stage_tasks[name] = task
        task.add_done_callback(
            lambda t: self._stage_tasks.pop(name) if self._stage_tasks.get(name) is t else None)

    async def _stop_stage(self, name: str) -> None:
        task = self._stage_tasks.get(name)
        if task is None:
            return
        self.supervisor.retire(name)
        task.cancel()
        _, stuck = await asyncio.wait([task], timeout=GRACE_PERIOD)
        if stuck:
            log.warning("%s did not stop within %.0fs for the reload; cancelling again (it "
                        "waits in %s)", task.get_name(), GRACE_PERIOD, _waits_in(task))
            task.cancel()
            await asyncio.wait([task], timeout=GRACE_PERIOD)

    def _catch_sighup(self) -> bool:
        """SIGHUP asks for a reload (instead of ending the process) when there is a file."""
        if self.config_path is None:
            return False
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_reload)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            log.debug("SIGHUP cannot be handled here: no reload on SIGHUP")
            return False
        return True

    def request_reload(self) -> None:
        """Reload the config file soon (SIGHUP does this). Requests made during a reload
        make one more reload after it, so the last version of the file always wins."""
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    async def reload(self, config: GatewayConfig | None = None) -> bool:
        """Apply a new config: ``config``, or else the file the gateway was started with.

        The new config is checked first; on any mistake (the file does not load, it changes a
        setting only a restart applies, a device link cannot be built) the error is logged, one
        line per problem, and the running config stays. Otherwise device links that changed
        are replaced, the alarm engine takes the new rules and devices in place, and every
        alarm, work order and queued message carries on. systemd is told RELOADING=1 before
        and READY=1 after.

        Returns:
            Whether the new config was applied.
        """
        async with self._reload_lock:
            notify_reloading()
            try:
                return await self._reload(config)
            finally:
                notify("READY=1")

    async def _reload(self, config: GatewayConfig | None) -> bool:
        source = "the new config" if config is not None else str(self.config_path)
        log.info("reloading the config from %s", source)
        failure: ConfigError | ValueError | None = None
        try:
            if config is None:
                if self.config_path is None:
                    log.error("config reload refused: the gateway was not started from a file")
                    return False
                warnings: list[ConfigProblem] = []
                config = await asyncio.to_thread(load_config, self.config_path,
                                                 warnings=warnings)
                for warning in warnings:
                    log.warning("config %s: %s", self.config_path, warning)
            restart = restart_only_changes(self.config, config)
            if restart:
                log.error("config reload refused: %s changes %s, which only a restart applies "
                          "(systemctl restart propgw); the running config stays", source,
                          ", ".join(restart))
                return False
            drivers = await asyncio.to_thread(_build_drivers, config, self.clock)
        # ValueError: drivers refusing a combination the loader let through.
        except (ConfigError, ValueError) as exc:
            failure = exc
        if failure is not None:
            _log_refusal(source, failure)
            return False
        if config is None or self.supervisor.stopping:
            return False
        await self._apply(config, drivers)
        return True

    async def _apply(self, config: GatewayConfig, built: list[Driver]) -> None:
        inputs = driver_inputs(config, built)
        kept = {name for name, made_of in inputs.items()
                if self._driver_inputs.get(name) == made_of}
        running = {d.name: d for d in self.drivers}
        replaced = [d.name for d in self.drivers if d.name not in kept]
        # Stop the old links before the new ones connect: an MQTT client id or a serial port
        # can be held by one of them at a time.
        for name in replaced:
            await self._stop_stage(name)
        try:
            self.points.reconfigure(config.devices)
            if self.accounting is not None:
                self.accounting.reconfigure(config)
            if self.telemetry is not None:
                self.telemetry.reconfigure(config)
            engine = await self.engine.reconfigure(config)
        except Exception:
            # A bug, not a config mistake (the config was checked): the links must still come
            # back, and the log must say that the rules may be half applied.
            log.exception("config reload: the alarm engine failed to take the new rules; "
                          "restart the gateway (systemctl restart propgw)")
            engine = "the alarm engine FAILED to take the new rules"
        finally:
            self.drivers = [running[d.name] if d.name in kept else d for d in built]
            self._driver_inputs = inputs
            self.health_model.set_drivers(self.drivers)
            if not self.supervisor.stopping:
                for driver in self.drivers:
                    if driver.name not in kept:
                        self._start_stage(driver.name, _runner(driver, self.points.publish))
        if config.log_level != self.config.log_level:
            logging.getLogger().setLevel(config.log_level)
        self.config = config
        if self.console is not None:
            self.console.backend.config = config
        started = [d for d in self.drivers if d.name not in kept]
        self.reloads += 1
        if self.freeze_heap:  # the old config's objects were frozen: collect what is garbage
            heap.refreeze()
        log.info("config reloaded: %d device(s), %d rule(s); %d device link(s) kept, %d "
                 "stopped, %d started; %s", len(config.devices), len(config.rules), len(kept),
                 len(replaced), len(started), engine)

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
        if self.telemetry is not None:
            out["telemetry"] = dataclasses.asdict(self.telemetry.stats())
        if self.accounting is not None and self._accounting_feed is not None:
            out["accounting"] = {"meters": len(self.accounting.accounts),
                                 "published": self.accounting.published,
                                 "steps": self.accounting.steps,
                                 "dropped": self._accounting_feed.dropped}
        return out

    def health_report(self) -> HealthReport:
        """The gateway's health now (see :mod:`gateway.health`)."""
        return self.health_model.report()

    def _build_web_server(self) -> None:
        up = self.config.upstream
        console = self.config.console
        metrics = self.config.metrics
        if (up is None or up.status_api is None) and (console is None or not console.enabled) \
                and (metrics is None or not metrics.enabled):
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
        if metrics is not None and metrics.enabled:
            owners.append(self._build_metrics(metrics))
        service = self.console
        self.web = WebServer(listen, owners=owners, health=self.health_report,
                             on_start=service.open if service else None,
                             on_stop=service.close if service else None)

    def _build_metrics(self, cfg: MetricsConfig) -> RouteOwner:
        """The collector with every built-in source, and its route. A stage added later
        joins with ``gateway.metrics.add(name, source)`` (see :mod:`gateway.metrics`)."""
        from prometheus_client import ProcessCollector

        from gateway import __version__
        from gateway.metrics import (
            GatewayCollector,
            LoopLagSampler,
            MetricsRoutes,
            accounting_metrics,
            alarm_metrics,
            build_info,
            bus_metrics,
            health_metrics,
            influx_metrics,
            link_metrics,
            outbox_metrics,
            telemetry_metrics,
            upstream_metrics,
        )

        collector = GatewayCollector()
        collector.add("build", build_info(__version__))
        collector.add("links", link_metrics(lambda: self.drivers))
        collector.add("bus", bus_metrics(self.bus))
        collector.add("alarms", alarm_metrics(self.engine.book))
        if self.outbox is not None:
            collector.add("outbox", outbox_metrics(self.outbox, self._progress, self.clock))
        collector.add("upstream", upstream_metrics(self._progress))
        if self.telemetry is not None:
            collector.add("telemetry", telemetry_metrics(self.telemetry.stats))
        if self.accounting is not None:
            collector.add("accounting", accounting_metrics(self.accounting))
        if self.influx is not None:
            collector.add("influxdb", influx_metrics(self.influx.status))
        collector.add("health", health_metrics(self.health_report, self.supervisor))
        self.loop_lag = LoopLagSampler(cfg.loop_lag_interval)
        collector.add("loop", self.loop_lag.metrics)
        # process_* (CPU seconds, resident memory, open files) from /proc, standard names.
        ProcessCollector(registry=collector.registry)
        self.metrics = collector
        token = cfg.token.get_secret_value() if cfg.token is not None else None
        return MetricsRoutes(collector, allow=cfg.allow, token=token)

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
        if self.outbox is None or up is None or not up.alarms:
            await self.desk.handle(event)
            return
        message = alarm_message(self.config.site, event)
        # Queued, not awaited, before the desk runs: the work order it raises joins the same
        # outbox transaction (one fsync for both) instead of waiting for this one's commit.
        stored = self.outbox.submit(OutboxItem(
            kind="alarm", channel="alarms", priority=event.priority,
            key=f"{event.alarm_id}:{event.state.value}:{event.ts:.3f}",
            payload=message.model_dump_json().encode()))
        await self.desk.handle(event)
        await stored  # cancelling the wait leaves the message to the outbox's writer

    async def _on_work_order(self, order: WorkOrder) -> None:
        # The work-order history keeps a reporter's contact; beyond it, it is masked unless
        # the site shares it (reports.share_contact).
        await self.worklog.record(order)
        order = shareable(order, self.config.reports.share_contact)
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


async def _with_contacts(orders: list[WorkOrder], worklog: WorkOrderLog) -> list[WorkOrder]:
    """The saved orders with each reporter's contact as logged: the outbox keeps what went
    upstream (masked unless the site shares it), the work-order history the full contact
    an operator calls back. Without this, every version after a restart would carry (and
    the history would keep) only the masked number."""
    out = []
    for saved in orders:
        order = saved
        if order.report is not None and order.report.contact is not None:
            try:
                history = await worklog.get(order.id)
            except WorkOrderLogError as exc:
                log.warning("work order %s: the reporter's contact cannot be read back from "
                            "the work-order history (%s); later versions carry it masked",
                            order.id, exc)
                history = None
            logged = history.latest.report if history is not None else None
            if logged is not None and logged.contact is not None:
                order = order.model_copy(update={"report": order.report.model_copy(
                    update={"contact": logged.contact})})
        out.append(order)
    return out


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


def _log_refusal(source: str, failure: ConfigError | ValueError) -> None:
    """One line per problem, each naming the file and the key."""
    if isinstance(failure, ValueError):
        log.error("config reload refused: %s: %s; the running config stays", source, failure)
        return
    log.error("config reload refused: %s has %d problem(s); the running config stays",
              failure.file, len(failure.problems))
    for problem in failure.problems:
        log.error("config reload refused: %s: %s", failure.file, problem)


def _build_drivers(config: GatewayConfig, clock: Clock) -> list[Driver]:
    return [*build_modbus_links(config.devices, clock), *build_mqtt_drivers(config, clock)]


def _runner(driver: Driver, sink: ReadingSink) -> Callable[[], Awaitable[None]]:
    return lambda: driver.run(sink)
