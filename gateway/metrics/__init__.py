"""Prometheus metrics: a collector reading the gateway's live objects at scrape time, the
``/metrics`` route, and the event-loop lag sampler. Imported only when ``metrics:`` is on."""

from gateway.metrics._collector import CONTENT_TYPE, GatewayCollector, MetricSource
from gateway.metrics._lag import LoopLagSampler
from gateway.metrics._routes import METRICS_PATH, MetricsRoutes
from gateway.metrics._sources import (
    COMM_LOSS_STATES,
    PRIORITIES,
    accounting_metrics,
    alarm_metrics,
    build_info,
    bus_metrics,
    health_metrics,
    histogram_family,
    influx_metrics,
    link_metrics,
    outbox_metrics,
    telemetry_metrics,
    upstream_metrics,
)

__all__ = [
    "COMM_LOSS_STATES",
    "CONTENT_TYPE",
    "METRICS_PATH",
    "PRIORITIES",
    "GatewayCollector",
    "LoopLagSampler",
    "MetricSource",
    "MetricsRoutes",
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
