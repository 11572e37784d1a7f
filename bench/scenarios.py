"""One measurement each, on fresh brokers: the idle gateway, the gateway under a paced load, and
the paho-only subscriber under the same load. ``bench/suite.py`` strings them together.

Times are wall-clock (one host clock for the publisher's ``sent_us`` and the receivers); CPU is
utime + stime of the measured process from ``/proc``, sampled about once a second.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import rig
from procstats import cpu_seconds, rss_mb


@dataclass(frozen=True)
class Timing:
    """How long each part of a scenario lasts, and how hard the rig pushes."""

    warmup: float  # seconds of load before CPU is counted
    settle: float  # seconds between "online" and the idle RSS reading
    drain: float  # the longest wait after the load for messages and probes still on their way
    publishers: int
    devices: int = 10
    canary_rate: float = 4.0  # life-safety canaries per second
    marker_rate: float = 4.0  # telemetry markers per second


@dataclass
class Idle:
    online_s: float
    rss_mb: float


@dataclass
class Step:
    """One load step: what was asked, what the publishers reached, what came out."""

    target: float
    achieved: float
    published: int
    cpu_pct: float  # median of the per-second CPU % after the warm-up
    received: int  # messages the subscriber took (gateway: taken + shed)
    shed: int = 0
    broker_dropped: int = 0  # the device broker's own count ($SYS)
    canaries: int = 0
    canaries_lost: int = 0
    orders_lost: int = 0
    markers: int = 0
    markers_lost: int = 0
    alarm_ms: list[float] = field(default_factory=list)  # canary → alarm message
    order_ms: list[float] = field(default_factory=list)  # canary → work order
    marker_ms: list[float] = field(default_factory=list)  # marker → alarm message
    p99_ms: float = math.nan  # the paho-only subscriber's own p99
    rss: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # start, peak, end

    @property
    def dropped(self) -> int:
        return max(0, self.published - self.received)

    @property
    def publisher_short(self) -> bool:
        return self.achieved < 0.95 * self.target

    def worst_p99(self) -> float:
        if self.p99_ms == self.p99_ms:  # paho-only
            return self.p99_ms
        return max(p99(self.alarm_ms), p99(self.marker_ms))

    def sustained(self) -> bool:
        """Every probe arrived, p99 under 2 s, nothing shed or dropped."""
        return (not self.publisher_short and self.dropped == 0 and self.shed == 0
                and self.canaries_lost == 0 and self.orders_lost == 0
                and self.markers_lost == 0 and self.worst_p99() < 2000)


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def verdict(step: Step) -> str:
    if step.publisher_short:
        return f"publishers reached only {step.achieved:.0f} msg/s"
    if step.sustained():
        return "held"
    why = []
    if step.dropped:
        why.append(f"{step.dropped} not taken (the broker dropped {step.broker_dropped})")
    if step.shed:
        why.append(f"{step.shed} shed")
    for count, what in ((step.canaries_lost, "canaries with no alarm"),
                        (step.orders_lost, "canaries with no work order"),
                        (step.markers_lost, "markers with no alarm")):
        if count:
            why.append(f"{count} {what}")
    if not math.isnan(step.worst_p99()) and step.worst_p99() >= 2000:
        why.append(f"p99 {step.worst_p99():.0f} ms")
    return "failed: " + ", ".join(why)


def idle(work: Path, t: Timing) -> Idle:
    """Start the gateway (no /metrics, as a site would run it): time to the retained
    ``online`` on the platform broker, then its RSS after ``settle`` seconds."""
    with rig.brokers(work) as (dev, up), rig.platform_subscriber(up.port) as platform, \
            rig.gateway(work, dev.port, up.port, t.devices, metrics=False) as gw:
        rig.wait_until(lambda: platform.online_at is not None, 60, "the gateway's online", gw.log)
        assert platform.online_at is not None
        online = platform.online_at - gw.started
        time.sleep(t.settle)
        return Idle(online, rss_mb(gw.proc.pid))


def gateway_step(work: Path, rate: float, seconds: float, t: Timing) -> Step:
    with rig.brokers(work) as (dev, up), rig.platform_subscriber(up.port) as platform, \
            rig.gateway(work, dev.port, up.port, t.devices, metrics=True) as gw:
        assert gw.metrics_port is not None
        port = gw.metrics_port
        rig.wait_until(lambda: platform.online_at is not None, 60, "the gateway's online", gw.log)
        rig.wait_until(lambda: _links_up(port), 30, "the device link", gw.log)
        time.sleep(0.5)
        rss_start = rss_mb(gw.proc.pid)
        with rig.publishers(dev.port, rate, seconds, processes=t.publishers,
                            devices=t.devices, canary_rate=t.canary_rate,
                            marker_rate=t.marker_rate) as procs:
            cpu, peak = _sample(gw.proc.pid, procs, t.warmup, seconds)
            load = rig.collect(procs, timeout=60)

        def taken() -> int:
            samples = rig.metrics(port)
            return int(rig.total(samples, "propgw_mqtt_messages_taken_total")
                       + rig.total(samples, "propgw_mqtt_messages_shed_total"))

        def arrived() -> bool:
            seen = platform.snapshot()
            return (taken() >= load.published and seen.canary_alarm.keys() >= load.canaries.keys()
                    and seen.canary_order.keys() >= load.canaries.keys()
                    and seen.marker_alarm.keys() >= load.markers.keys())

        deadline = time.monotonic() + t.drain
        while not arrived() and time.monotonic() < deadline:
            peak = max(peak, rss_mb(gw.proc.pid))
            time.sleep(0.1)
        samples = rig.metrics(port)
        seen = platform.snapshot()
        rss_end = rss_mb(gw.proc.pid)
        time.sleep(1.1)  # the broker's $SYS counters are a second old at most
        dropped = rig.broker_dropped(dev.port)
    shed = int(rig.total(samples, "propgw_mqtt_messages_shed_total"))
    return Step(
        target=rate, achieved=load.rate, published=load.published, cpu_pct=cpu,
        received=int(rig.total(samples, "propgw_mqtt_messages_taken_total")) + shed, shed=shed,
        broker_dropped=dropped,
        canaries=len(load.canaries), markers=len(load.markers),
        canaries_lost=len(load.canaries.keys() - seen.canary_alarm.keys()),
        orders_lost=len(load.canaries.keys() - seen.canary_order.keys()),
        markers_lost=len(load.markers.keys() - seen.marker_alarm.keys()),
        alarm_ms=_latencies(load.canaries, seen.canary_alarm),
        order_ms=_latencies(load.canaries, seen.canary_order),
        marker_ms=_latencies(load.markers, seen.marker_alarm),
        rss=(rss_start, max(peak, rss_end), rss_end))


def paho_step(work: Path, rate: float, seconds: float, t: Timing) -> Step:
    """The same load into a minimal paho subscriber (QoS 1) instead of the gateway."""
    with rig.brokers(work) as (dev, _up):
        sub = subprocess.Popen([sys.executable, str(rig.REPO / "bench/pahosub.py"), "--port",
                                str(dev.port)], cwd=rig.REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        try:
            assert sub.stdin is not None
            assert sub.stdout is not None
            if sub.stdout.readline().strip() != "ready":
                raise RuntimeError("the paho-only subscriber did not subscribe")

            def report() -> dict[str, float]:
                assert sub.stdin is not None
                assert sub.stdout is not None
                sub.stdin.write("report\n")
                sub.stdin.flush()
                return dict(json.loads(sub.stdout.readline()))

            with rig.publishers(dev.port, rate, seconds, processes=t.publishers,
                                devices=t.devices, canary_rate=t.canary_rate,
                                marker_rate=t.marker_rate) as procs:
                cpu, _ = _sample(sub.pid, procs, t.warmup, seconds)
                load = rig.collect(procs, timeout=60)
            deadline = time.monotonic() + t.drain
            seen = report()
            while seen["received"] < load.published and time.monotonic() < deadline:
                time.sleep(0.1)
                seen = report()
            time.sleep(1.1)  # the broker's $SYS counters are a second old at most
            dropped = rig.broker_dropped(dev.port)
        finally:
            if sub.stdin is not None:
                sub.stdin.close()
            try:
                sub.wait(10)
            except subprocess.TimeoutExpired:
                sub.kill()
                sub.wait()
    return Step(target=rate, achieved=load.rate, published=load.published, cpu_pct=cpu,
                received=int(seen["received"]), p99_ms=seen["p99_ms"], broker_dropped=dropped)


def _links_up(port: int) -> bool:
    try:
        samples = rig.metrics(port)
    except OSError:
        return False
    return rig.total(samples, "propgw_link_up") >= 1


def _sample(pid: int, procs: list[subprocess.Popen[str]], warmup: float,
            seconds: float) -> tuple[float, float]:
    """Until the publishers end (bounded): the median CPU % of ``pid`` over whole seconds
    after ``warmup`` (at most a third of the load), and its peak RSS."""
    warmup = min(warmup, seconds / 3)  # short steps keep two thirds of their samples
    start = time.monotonic()
    deadline = start + seconds + 30
    shares: list[float] = []
    peak = rss_mb(pid)
    mark, used = None, 0.0
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
        now = time.monotonic()
        peak = max(peak, rss_mb(pid))
        if now - start < warmup or now - start > seconds:
            continue
        if mark is None:
            mark, used = now, cpu_seconds(pid)
        elif now - mark >= 1.0:
            cpu = cpu_seconds(pid)
            shares.append(100 * (cpu - used) / (now - mark))
            mark, used = now, cpu
    return (statistics.median(shares) if shares else math.nan), peak


def _latencies(sent: dict[int, float], received: dict[int, float]) -> list[float]:
    return [(received[k] - at) * 1000 for k, at in sent.items() if k in received]
