"""One Prometheus collector that reads the gateway's live objects at scrape time.

Nothing in the pipeline counts for Prometheus: the stages already keep their own numbers
(bus subscriptions, link health, the alarm book, the outbox, publishers' progress), and a
scrape turns them into metric families. A new stage joins with one line::

    collector.add("influx", lambda: influx_metrics(writer))

where the source is any callable returning prometheus-client metric families (see
:mod:`gateway.metrics._sources` for examples). A source that raises is skipped for that scrape,
logged once and counted in ``propgw_metrics_source_errors_total``, so one broken source never
costs the other metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

__all__ = ["CONTENT_TYPE", "GatewayCollector", "MetricSource"]

log = logging.getLogger(__name__)

#: What a source returns: metric families built now, from live objects.
MetricSource = Callable[[], Iterable[Metric]]

#: The classic Prometheus text format (0.0.4), which ``generate_latest`` writes and every
#: Prometheus 2.x and 3.x reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector:
    """The gateway's metric sources, on a private registry (never prometheus-client's global
    one: two gateways in one process, as in the tests, must not share or clash)."""

    def __init__(self) -> None:
        self._sources: dict[str, MetricSource] = {}
        self._errors: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def add(self, name: str, source: MetricSource) -> None:
        """Add (or replace) the source called ``name``; its metrics appear from the next
        scrape on.

        Raises:
            ValueError: ``name`` is empty.
        """
        if not name:
            raise ValueError("a metric source needs a name")
        self._sources[name] = source

    def remove(self, name: str) -> None:
        """Forget a source (a stage that is gone); unknown names are ignored."""
        self._sources.pop(name, None)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def exposition(self) -> bytes:
        """Every source's metrics now, in the text format of :data:`CONTENT_TYPE`."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """prometheus-client's collector protocol: every source's families, then the errors."""
        for name, source in list(self._sources.items()):
            try:
                # Materialised first: a source failing half-way yields nothing, never a part.
                families = list(source())
            except Exception:
                self._errors[name] = self._errors.get(name, 0) + 1
                if self._errors[name] == 1:
                    log.exception("metrics: source %s failed; its metrics are left out of "
                                  "scrapes while it fails (counted, logged once)", name)
                continue
            yield from families
        errors = CounterMetricFamily(
            "propgw_metrics_source_errors", "Scrapes in which a metric source failed and was "
            "left out, by source.", labels=["source"])
        for name, n in sorted(self._errors.items()):
            errors.add_metric([name], n)
        yield errors
