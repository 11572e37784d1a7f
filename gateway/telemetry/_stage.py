"""The telemetry stage: readings off the bus, reported by exception, batched per device into
the outbox.

Back-pressure: telemetry must never slow alarms. The stage reads its own bus subscription,
subscribed ``drop-oldest`` (a stage that falls behind loses its oldest readings, counted, and the
drivers never wait for it), and its messages are outbox kind ``telemetry``: sent after every
alarm and work order, and shed first when the outbox is full.

Batching: the points due are collected per device for ``flush_every`` (1 s) and then sent as one
message per device; a device with ``max_points_per_message`` points due is sent at once (and a
larger batch is split). Changes that wait for their ``min_interval`` and heartbeats are looked at
on the same timer.

State is in memory only: after a restart every selected point is reported again (``first``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import math
from dataclasses import dataclass, field

from gateway.accounting import accounted_points, building_devices
from gateway.aio import first_of, task_group
from gateway.bus import Subscription
from gateway.clock import Clock
from gateway.config import DeviceConfig, GatewayConfig, TelemetryConfig
from gateway.model import Reading, Value
from gateway.outbox import Outbox, OutboxItem
from gateway.telemetry._exception import Report, ReportByException
from gateway.telemetry._selection import Selection
from gateway.upstream._telemetry import TelemetryMessage, TelemetryPoint
from gateway.workorders import WorkOrderLocation

__all__ = ["CHANNEL", "TelemetryStage", "TelemetryStats"]

log = logging.getLogger(__name__)

#: Outbox channel prefix: a message for device D goes on ``telemetry/D`` (MQTT topic
#: ``<prefix>/<site>/telemetry/D``; HTTP: ``upstream.http.telemetry_url``).
CHANNEL = "telemetry"


@dataclass(frozen=True, slots=True)
class TelemetryStats:
    """Counters since start, for the health report and ``/metrics``."""

    #: Readings the stage took from its bus subscription.
    readings: int
    #: Readings of points no selection includes (or of devices not in the config).
    not_selected: int
    #: Readings the bus dropped because the stage fell behind.
    dropped: int
    #: Points reported, in total and by reason (first, change, quality, heartbeat).
    reported: int
    reported_by_reason: dict[str, int] = field(default_factory=dict)
    #: Readings not reported: within the deadband of the last reported value.
    suppressed: int = 0
    #: Changes that waited for ``min_interval`` (sent later with the newest value).
    deferred: int = 0
    #: Points beyond the tracking bound, never reported.
    untracked: int = 0
    #: Points tracked now.
    points: int = 0
    #: Messages handed to the outbox.
    messages: int = 0
    #: Telemetry messages the outbox shed because it was full (on arrival or later).
    shed: int = 0


class TelemetryStage:
    """Reports selected points upstream by exception.

    Args:
        config: The gateway config; needs a ``telemetry`` section.
        clock: Timers (flush, min/max intervals) and timestamps.
        outbox: Where the messages go (kind ``telemetry``).
        feed: This stage's bus subscription (``drop-oldest``).

    Raises:
        ValueError: the config has no telemetry section.
    """

    def __init__(self, config: GatewayConfig, clock: Clock, outbox: Outbox,
                 feed: Subscription) -> None:
        if config.telemetry is None:
            raise ValueError("TelemetryStage needs a 'telemetry' section in the config")
        self._cfg: TelemetryConfig = config.telemetry
        self._site = config.site
        self._clock = clock
        self._outbox = outbox
        self._feed = feed
        self._selection = _selection(self._cfg, config)
        self._rbe = ReportByException()
        #: Points due, per concrete device id: (device config, point -> report).
        self._batches: dict[str, tuple[DeviceConfig, dict[str, Report]]] = {}
        self._full = asyncio.Event()
        self._ids = itertools.count(1)
        self._readings = 0
        self._not_selected = 0
        self._messages = 0

    def stats(self) -> TelemetryStats:
        """The counters now."""
        c = self._rbe.counters
        return TelemetryStats(
            readings=self._readings, not_selected=self._not_selected,
            dropped=self._feed.dropped, reported=c.reported,
            reported_by_reason=dict(c.by_reason), suppressed=c.suppressed,
            deferred=c.deferred, untracked=c.untracked, points=len(self._rbe),
            messages=self._messages, shed=self._outbox.shed_by_kind.get("telemetry", 0))

    def reconfigure(self, config: GatewayConfig) -> None:
        """Take the devices of a reloaded config (the telemetry section is restart-only)."""
        self._selection = _selection(self._cfg, config)

    async def run(self) -> None:
        """Read, report and send until cancelled."""
        async with task_group() as tg:
            tg.create_task(self._read(), name="telemetry.read")
            tg.create_task(self._flush_loop(), name="telemetry.flush")

    # ------------------------------------------------------------------ reading

    async def _read(self) -> None:
        while True:
            for reading in await self._feed.get_batch():  # one queue operation per batch
                self.take(reading)

    def take(self, reading: Reading) -> None:
        """Offer one reading (what :meth:`run` does with each reading of the feed)."""
        self._readings += 1
        spec = self._selection.spec(reading.device, reading.point)
        if spec is None:
            self._not_selected += 1
            return
        if spec.interval:
            # Each reading is its own interval (several may come at once after a silence):
            # all are sent, keyed by their start so none replaces another in the batch.
            self._add(spec.device, Report(reading, "change", spec.unit),
                      key=f"{reading.point}@{reading.received_ts}")
            return
        report = self._rbe.offer(reading, spec.policy, self._clock.monotonic(), spec.unit)
        if report is not None:
            self._add(spec.device, report)

    def _add(self, device: DeviceConfig, report: Report, key: str | None = None) -> None:
        entry = self._batches.get(report.reading.device)
        if entry is None:
            entry = self._batches[report.reading.device] = (device, {})
        entry[1][key or report.reading.point] = report
        if len(entry[1]) >= self._cfg.max_points_per_message:
            self._full.set()

    # ------------------------------------------------------------------ sending

    async def _flush_loop(self) -> None:
        every = self._cfg.flush_every
        tick = self._clock.monotonic() + every
        while True:
            await first_of(self._clock.sleep_until(tick), self._full.wait())
            self._full.clear()
            now = self._clock.monotonic()
            if now + 1e-9 >= tick:
                for report in self._rbe.due(now):
                    spec = self._selection.spec(report.reading.device, report.reading.point)
                    if spec is None:  # no longer selected after a reload
                        self._rbe.forget(report.reading.key)
                    else:
                        self._add(spec.device, report)
                while tick <= now + 1e-9:
                    tick += every
                await self.flush()
            else:
                await self.flush(full_only=True)

    async def flush(self, *, full_only: bool = False) -> None:
        """Send the points due now, one message per device (or per ``max_points_per_message``
        points); ``full_only``: only the devices with a full batch."""
        limit = self._cfg.max_points_per_message
        items: list[OutboxItem] = []
        for device_id in list(self._batches):
            device, points = self._batches[device_id]
            if full_only and len(points) < limit:
                continue
            del self._batches[device_id]
            reports = list(points.values())
            for start in range(0, len(reports), limit):
                items.append(self._item(device_id, device, reports[start:start + limit]))
        if not items:
            return
        async with task_group() as tg:
            for item in items:
                tg.create_task(self._put(item))

    async def _put(self, item: OutboxItem) -> None:
        await self._outbox.put(item)
        self._messages += 1

    def _item(self, device_id: str, device: DeviceConfig, reports: list[Report]) -> OutboxItem:
        now = self._clock.time()
        message_id = (f"{self._site.gateway_id}:{device_id}:{int(now * 1000)}:"
                      f"{next(self._ids)}")
        loc = device.location
        message = TelemetryMessage(
            id=message_id, site_id=self._site.id, gateway_id=self._site.gateway_id,
            device=device_id, kind=device.kind,
            location=WorkOrderLocation(site=self._site.id, building=loc.building,
                                       floor=loc.floor, zone=loc.zone, room=loc.room,
                                       device=device_id, device_name=device.name or device_id),
            sent_at=_iso(now),
            points=[_point(r) for r in reports])
        return OutboxItem(kind="telemetry", channel=f"{CHANNEL}/{device_id}", key=message_id,
                          payload=message.model_dump_json().encode())


def _point(report: Report) -> TelemetryPoint:
    r = report.reading
    return TelemetryPoint(
        point=r.point, value=_json_value(r.value), quality=r.quality.value, unit=report.unit,
        reason=report.reason, received_at=_iso(r.received_ts),
        source_at=_iso(r.source_ts) if r.source_ts is not None else None, error=r.error)


def _json_value(value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": JSON has no such numbers
    return value


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def _selection(cfg: TelemetryConfig, config: GatewayConfig) -> Selection:
    """The site's devices, with what accounting adds: interval points and building devices."""
    return Selection(cfg, config.devices, virtual=building_devices(config),
                     extra_points=accounted_points(config))
