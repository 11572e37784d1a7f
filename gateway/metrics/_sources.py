"""The gateway's built-in metric sources: each reads one kind of live object at scrape time.

Every function returns a :data:`~gateway.metrics.MetricSource` (a callable building metric
families now). Objects that a config reload replaces (the drivers) are passed as getters.
The names, labels and meaning of every metric are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric

from drivers.base import Driver
from gateway.alarms import AlarmBook, LifecycleState
from gateway.bus import Bus
from gateway.clock import Clock
from gateway.health import HealthReport
from gateway.histogram import Histogram
from gateway.metrics._collector import MetricSource
from gateway.mqtt_lane import Lane
from gateway.outbox import DeliveryProgress, Outbox
from gateway.supervisor import Supervisor

if TYPE_CHECKING:
    from gateway.accounting import Accounting
    from gateway.influx import InfluxStatus
    from gateway.telemetry import TelemetryStats

__all__ = [
    "COMM_LOSS_STATES",
    "PRIORITIES",
    "accounting_metrics",
    "alarm_metrics",
    "build_info",
    "bus_metrics",
    "health_metrics",
    "histogram_family",
    "influx_metrics",
    "link_metrics",
    "outbox_metrics",
    "telemetry_metrics",
    "upstream_metrics",
]

#: Device states that mean the device is not answering at all.
COMM_LOSS_STATES = frozenset({"comm-loss", "link-down", "backoff"})
#: Outbox message kinds that may be shed (work orders never are).
SHEDDABLE_KINDS = ("alarm", "telemetry")
#: Every alarm priority, so that a priority without alarms shows 0 rather than no series.
PRIORITIES = ("P0", "P1", "P2", "P3")
_STATUSES = ("ok", "degraded", "failing")


def build_info(version: str) -> MetricSource:
    """``propgw_build_info``: constant 1, with the version as labels."""
    def source() -> Iterable[Metric]:
        info = GaugeMetricFamily("propgw_build_info", "Always 1; the labels say which propgw "
                                 "and Python run.", labels=["version", "python"])
        info.add_metric([version, platform.python_version()], 1)
        return [info]
    return source


def link_metrics(drivers: Callable[[], Sequence[Driver]]) -> MetricSource:
    """Readings, events, state and devices of every device link (Modbus, MQTT)."""
    def source() -> Iterable[Metric]:
        readings = CounterMetricFamily(
            "propgw_readings", "Readings a device link produced (good, bad and comm-loss), by "
            "link; rate() gives readings per second.", labels=["link"])
        events = CounterMetricFamily(
            "propgw_link_events", "What a device link counted besides readings (requests, "
            "timeouts, retries, connects, messages, malformed...), by link and event.",
            labels=["link", "event"])
        up = GaugeMetricFamily("propgw_link_up", "1 while the device link is connected.",
                               labels=["link"])
        devices = GaugeMetricFamily("propgw_devices", "Devices per link and state (ok, bad, "
                                    "comm-loss, link-down, backoff, starting).",
                                    labels=["link", "state"])
        lost = GaugeMetricFamily("propgw_devices_comm_loss", "Devices that do not answer at "
                                 "all (comm-loss, link-down, backoff), by link.",
                                 labels=["link"])
        shed = CounterMetricFamily(
            "propgw_mqtt_messages_shed", "MQTT messages a device link shed because its lane "
            "already held max_queued_messages (oldest first; only the telemetry lane ever "
            "sheds), by link and lane.", labels=["link", "lane"])
        taken = CounterMetricFamily(
            "propgw_mqtt_messages_taken", "MQTT messages a device link took and acknowledged "
            "to the broker, by link and lane.", labels=["link", "lane"])
        waiting = GaugeMetricFamily(
            "propgw_mqtt_messages_waiting", "MQTT messages received but not yet taken, by "
            "link and lane.", labels=["link", "lane"])
        latency = HistogramMetricFamily(
            "propgw_modbus_request_duration_seconds", "Time from a Modbus read request to its "
            "answer, by link (bus); timeouts are not observed but counted in "
            "propgw_link_events_total{event=\"timeouts\"}.", labels=["link"], unit="seconds")
        for driver in drivers():
            h = driver.health()
            readings.add_metric([h.link], h.counters.get("readings", 0))
            for event, n in sorted(h.counters.items()):
                if event != "readings":
                    events.add_metric([h.link, event], n)
            up.add_metric([h.link], 1 if h.state == "connected" else 0)
            for state, n in sorted(Counter(h.devices.values()).items()):
                devices.add_metric([h.link, state], n)
            lost.add_metric([h.link], sum(1 for s in h.devices.values()
                                          if s in COMM_LOSS_STATES))
            hist = getattr(driver, "request_latency", None)
            if isinstance(hist, Histogram):
                _add_histogram(latency, [h.link], hist)
            for lane in getattr(driver, "lanes", ()):
                if isinstance(lane, Lane):
                    shed.add_metric([h.link, lane.name], lane.counters.shed)
                    taken.add_metric([h.link, lane.name], lane.counters.taken)
                    waiting.add_metric([h.link, lane.name], lane.waiting)
        return [readings, events, up, devices, lost, shed, taken, waiting, latency]
    return source


def bus_metrics(bus: Bus) -> MetricSource:
    """Readings through the bus and each subscription's queue, deliveries and drops."""
    def source() -> Iterable[Metric]:
        published = CounterMetricFamily("propgw_bus_published", "Readings published on the "
                                        "bus (after derived points joined).")
        published.add_metric([], bus.published)
        depth = GaugeMetricFamily("propgw_bus_queue_depth", "Readings waiting in a "
                                  "subscription's queue.", labels=["subscription"])
        capacity = GaugeMetricFamily("propgw_bus_queue_capacity", "The bound of a "
                                     "subscription's queue.", labels=["subscription"])
        delivered = CounterMetricFamily("propgw_bus_delivered", "Readings a subscriber took.",
                                        labels=["subscription"])
        dropped = CounterMetricFamily("propgw_bus_dropped", "Readings shed because a "
                                      "drop-oldest subscriber was not keeping up.",
                                      labels=["subscription"])
        for sub in bus.subscriptions:
            depth.add_metric([sub.name], sub.queue.qsize())
            capacity.add_metric([sub.name], sub.queue.maxsize)
            delivered.add_metric([sub.name], sub.delivered)
            dropped.add_metric([sub.name], sub.dropped)
        failed = CounterMetricFamily("propgw_bus_tap_failures", "Batches a consumer fed "
                                     "inline by the bus (a tap) failed to take.",
                                     labels=["subscription"])
        for tap in bus.taps:  # fed inline: no queue, nothing dropped
            delivered.add_metric([tap.name], tap.delivered)
            failed.add_metric([tap.name], tap.failed)
        return [published, depth, capacity, delivered, dropped, failed]
    return source


def alarm_metrics(book: AlarmBook) -> MetricSource:
    """Alarms the book knows, by lifecycle state and priority (every pair, zeros included)."""
    def source() -> Iterable[Metric]:
        counts = Counter((rec.lifecycle.value, rec.priority) for rec in book.records())
        alarms = GaugeMetricFamily("propgw_alarms", "Alarms by ISA-18.2 lifecycle state and "
                                   "priority.", labels=["state", "priority"])
        priorities = sorted({*PRIORITIES, *(p for _, p in counts)})
        for state in LifecycleState:
            for priority in priorities:
                alarms.add_metric([state.value, priority], counts.get((state.value, priority),
                                                                      0))
        return [alarms]
    return source


def outbox_metrics(outbox: Outbox, targets: Iterable[str], clock: Clock) -> MetricSource:
    """Depth and oldest age per target, parked messages, shedding and the bound."""
    names = sorted(targets)

    def source() -> Iterable[Metric]:
        now = clock.monotonic()
        h = outbox.health()
        pending = GaugeMetricFamily("propgw_outbox_pending_messages", "Messages waiting for "
                                    "delivery to a target.", labels=["target"])
        oldest = GaugeMetricFamily(
            "propgw_outbox_oldest_pending_age_seconds", "Age of the oldest message waiting "
            "for a target; 0 when none waits.", labels=["target"], unit="seconds")
        parked = GaugeMetricFamily("propgw_outbox_parked_messages", "Messages a target refused "
                                   "for good (HTTP 4xx); a person must look.", labels=["target"])
        for name in names:
            pending.add_metric([name], outbox.pending(name))
            env = outbox.oldest_pending(name)
            oldest.add_metric([name], 0.0 if env is None else max(0.0, now - env.queued))
            parked.add_metric([name], h.parked.get(name, 0))
        shed = CounterMetricFamily("propgw_outbox_shed", "Messages shed because the outbox was "
                                   "full (telemetry first, then non-life-safety alarms), by "
                                   "kind.", labels=["kind"])
        for kind in sorted({*SHEDDABLE_KINDS, *outbox.shed_by_kind}):
            shed.add_metric([kind], outbox.shed_by_kind.get(kind, 0))
        over = GaugeMetricFamily("propgw_outbox_over_bound", "1 while the outbox holds more "
                                 "than its bound (only work orders and P0 alarms are left).")
        over.add_metric([], 1 if h.over_bound else 0)
        durable = GaugeMetricFamily("propgw_outbox_durable", "1 when the outbox is on disk; 0 "
                                    "when in memory only.")
        durable.add_metric([], 1 if h.durable and h.storage_error is None else 0)
        return [pending, oldest, parked, shed, over, durable]
    return source


def upstream_metrics(targets: Mapping[str, DeliveryProgress]) -> MetricSource:
    """Link state and deliveries per upstream target (mqtt, http)."""
    def source() -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "propgw_upstream_up", "1 while the upstream target is reachable: the MQTT session "
            "is connected; for HTTP, the last attempt did not fail.", labels=["target"])
        sent = CounterMetricFamily("propgw_upstream_sent", "Messages delivered to the target.",
                                   labels=["target"])
        for name, progress in sorted(targets.items()):
            ok = progress.connected if progress.connected is not None \
                else progress.last_error is None
            up.add_metric([name], 1 if ok else 0)
            sent.add_metric([name], progress.sent)
        return [up, sent]
    return source


def telemetry_metrics(stats: Callable[[], TelemetryStats]) -> MetricSource:
    """Readings upstream by exception: what the telemetry stage took, reported and held back
    (its bus drops and outbox shedding are in the bus and outbox metrics)."""
    def source() -> Iterable[Metric]:
        now = stats()
        fams: list[Metric] = []
        for name, help_text, n in (
                ("propgw_telemetry_readings", "Readings the telemetry stage took from the bus.",
                 now.readings),
                ("propgw_telemetry_not_selected_readings", "Readings of points no telemetry "
                 "selection includes.", now.not_selected),
                ("propgw_telemetry_suppressed_readings", "Readings not reported: within the "
                 "deadband of the last reported value.", now.suppressed),
                ("propgw_telemetry_deferred_readings", "Changes that waited for min_interval "
                 "(then sent with the newest value).", now.deferred),
                ("propgw_telemetry_untracked_readings", "Readings of points beyond the tracking "
                 "bound, never reported.", now.untracked),
                ("propgw_telemetry_messages", "Telemetry messages handed to the outbox.",
                 now.messages)):
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], n)
            fams.append(family)
        reported = CounterMetricFamily("propgw_telemetry_reported", "Point values reported "
                                       "upstream, by reason (first, change, quality, "
                                       "heartbeat).", labels=["reason"])
        for reason, n in sorted(now.reported_by_reason.items()):
            reported.add_metric([reason], n)
        points = GaugeMetricFamily("propgw_telemetry_points", "Points the telemetry stage "
                                   "tracks now.")
        points.add_metric([], now.points)
        return [*fams, reported, points]
    return source


def accounting_metrics(accounting: Accounting) -> MetricSource:
    """Energy and water accounting: intervals published and register steps that were not
    consumption (its bus drops are in the bus metrics, as the ``accounting`` subscription)."""
    def source() -> Iterable[Metric]:
        meters = GaugeMetricFamily("propgw_accounting_registers", "Cumulative registers "
                                   "(meter points) accounted.")
        meters.add_metric([], len(accounting.accounts))
        published = CounterMetricFamily("propgw_accounting_intervals", "Interval readings "
                                        "(per meter and per building) published.")
        published.add_metric([], accounting.published)
        steps = CounterMetricFamily("propgw_accounting_steps", "Register readings taken as a "
                                    "reset or replaced meter (restart), an implausible jump "
                                    "(jump) or a silence beyond max_gap (gap).",
                                    labels=["kind"])
        for kind, n in sorted(accounting.steps_by_kind.items()):
            steps.add_metric([kind], n)
        return [meters, published, steps]
    return source


_INFLUX_STATES = ("starting", "up", "down", "refused")


def influx_metrics(status: Callable[[], InfluxStatus]) -> MetricSource:
    """History into InfluxDB: what was written, what waits in the buffer, what was lost (its
    bus drops are also in the bus metrics, as the ``influxdb`` subscription)."""
    def source() -> Iterable[Metric]:
        now = status()
        state = GaugeMetricFamily("propgw_influxdb_state", "1 for the InfluxDB writer's state "
                                  "(starting, up, down, refused), 0 for the others.",
                                  labels=["state"])
        for name in _INFLUX_STATES:
            state.add_metric([name], 1 if now.state == name else 0)
        fams: list[Metric] = [state]
        for name, help_text, n in (
                ("propgw_influxdb_written_points", "Points InfluxDB accepted.", now.written),
                ("propgw_influxdb_written_batches", "Write requests InfluxDB accepted.",
                 now.batches_written),
                ("propgw_influxdb_dropped_points", "Points dropped because the buffer was full "
                 "(oldest first).", now.dropped),
                ("propgw_influxdb_rejected_points", "Points in batches InfluxDB refused as bad "
                 "(400, 413, 422).", now.rejected)):
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], n)
            fams.append(family)
        for name, help_text, value in (
                ("propgw_influxdb_buffered_points", "Points waiting in the buffer for InfluxDB.",
                 now.buffered),
                ("propgw_influxdb_buffered_bytes", "Line-protocol bytes waiting in the buffer.",
                 now.buffered_bytes)):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            fams.append(gauge)
        return fams
    return source


def health_metrics(report: Callable[[], HealthReport], supervisor: Supervisor) -> MetricSource:
    """The health status (one-hot, as /healthz says it) and each stage's restarts."""
    def source() -> Iterable[Metric]:
        now = report()
        status = GaugeMetricFamily("propgw_health_status", "1 for the gateway's current health "
                                   "status (ok, degraded, failing), 0 for the others.",
                                   labels=["status"])
        for name in _STATUSES:
            status.add_metric([name], 1 if now.status == name else 0)
        reasons = GaugeMetricFamily("propgw_health_reasons", "Reasons the health is not ok, "
                                    "by code.", labels=["code"])
        for code, n in sorted(Counter(r.code for r in now.reasons).items()):
            reasons.add_metric([code], n)
        restarts = CounterMetricFamily("propgw_stage_restarts", "Times a supervised stage "
                                       "crashed and was restarted.", labels=["stage"])
        for st in supervisor.stages():
            restarts.add_metric([st.name], st.restarts)
        return [status, reasons, restarts]
    return source


def histogram_family(name: str, documentation: str, hist: Histogram) -> HistogramMetricFamily:
    """A label-less histogram family from a :class:`~gateway.histogram.Histogram`."""
    family = HistogramMetricFamily(name, documentation, unit="seconds")
    _add_histogram(family, [], hist)
    return family


def _add_histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    buckets = [("+Inf" if math.isinf(bound) else _le(bound), float(n))
               for bound, n in hist.cumulative()]
    family.add_metric(labels, buckets, hist.sum)


def _le(bound: float) -> str:
    return repr(bound)
