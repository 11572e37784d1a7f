"""Event-loop lag: how late a periodic wake-up comes.

Everything in the gateway shares one event loop; a blocking call (a slow disk write, a CPU-heavy
parse) delays every poll, alarm and delivery behind it. The sampler sleeps ``interval`` and
measures how much later than asked it woke up. It uses the loop's own clock, not the gateway's
injectable one: it measures the real loop, not simulated time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from gateway.histogram import LOOP_LAG_BUCKETS, Histogram
from gateway.metrics._sources import histogram_family

__all__ = ["LoopLagSampler"]


class LoopLagSampler:
    """Samples the lag until cancelled (:meth:`run`); :meth:`metrics` is its metric source.

    Args:
        interval: Seconds between wake-ups (``metrics.loop_lag_interval``).
    """

    def __init__(self, interval: float = 0.5) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.interval = interval
        self.histogram = Histogram(LOOP_LAG_BUCKETS)
        #: The latest sample, seconds.
        self.last = 0.0
        self.max = 0.0

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.record(loop.time() - asked)

    def record(self, lag: float) -> None:
        """One sample (also for tests of the arithmetic)."""
        lag = max(0.0, lag)
        self.last = lag
        self.max = max(self.max, lag)
        self.histogram.observe(lag)

    def metrics(self) -> Iterable[Metric]:
        last = GaugeMetricFamily("propgw_event_loop_lag_last_seconds", "How late the latest "
                                 "periodic wake-up of the event loop came.", unit="seconds")
        last.add_metric([], self.last)
        worst = GaugeMetricFamily("propgw_event_loop_lag_max_seconds", "The latest wake-up "
                                  "that came latest since start.", unit="seconds")
        worst.add_metric([], self.max)
        return [histogram_family("propgw_event_loop_lag_seconds", "How late periodic "
                                 "wake-ups of the event loop came.", self.histogram), last,
                worst]
