"""A dependency-free latency histogram that a stage keeps and a metrics scrape reads.

Stages (the Modbus links, the event-loop lag sampler) record durations here without knowing
about Prometheus; :mod:`gateway.metrics` turns the counts into a histogram family at scrape
time. Bucket bounds are upper bounds in seconds, inclusive (Prometheus' ``le``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

__all__ = ["LOOP_LAG_BUCKETS", "REQUEST_BUCKETS", "Histogram"]

#: A Modbus request and its answer: a few ms on TCP, tens to hundreds of ms on RS-485.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: How late a periodic wake-up of the event loop comes: well under 1 ms when healthy.
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts of observed durations per bucket, their sum and count.

    Args:
        bounds: Increasing, finite upper bounds in seconds; an overflow bucket (+Inf) is
            always added.

    Raises:
        ValueError: The bounds are empty, not increasing or not finite.
    """

    def __init__(self, bounds: Sequence[float] = REQUEST_BUCKETS) -> None:
        if not bounds or any(not math.isfinite(b) for b in bounds) \
                or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"histogram bounds must be finite and increasing, got {bounds}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Record one duration (negative values, from a clock step, count as 0)."""
        seconds = max(0.0, seconds)
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, ending with (inf, count)."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out
