"""The last reading of every point and per-device counters, for the console's devices page.

A bus subscriber that keeps, for each (device, point), the latest :class:`~gateway.model.Reading`
(value, quality, the device's and the gateway's timestamps, the error), and for each device how
many readings it took, when the last one arrived and how many of each quality.

Feeding: the gateway taps the bus (:meth:`LastReadings.attach`): the bus calls
:meth:`LastReadings.take` with each batch, inline, so the view costs no queue and no task
wake-up per message, only its dictionary updates, and it never falls behind (nothing shed).
It can also run as an ordinary subscriber (:meth:`LastReadings.run`) with ``Overflow.DROP_OLDEST``:
when it falls behind, the bus sheds its oldest queued readings and counts them
(:attr:`Subscription.dropped`, shown in :meth:`LastReadings.snapshot`), so the drivers and the
alarm engine never wait for it. A shed reading is an older one: the newest of each point still
arrives, so the values shown are never older than the queue; only the counters undercount, by
the number dropped.

Memory: bounded by ``max_points``. A reading of a point not seen before, once the bound is
reached, evicts the point updated longest ago (a device that went away, a templated MQTT device
id that appeared once); a device goes with its last point. Evictions are counted and logged once.

At DEBUG level every change of a point's value or quality is logged (``E1.car_status = 0
(good)``): ``propgw run --log-level DEBUG`` shows what the gateway reads.

Durability: none on purpose. It is rebuilt from the live feed within one poll cycle of a restart.

Failure: nothing here can fail; :meth:`LastReadings.take` only updates dictionaries (and a
tap that raised would be logged, counted and fed on by the bus), :meth:`LastReadings.run` ends
only when cancelled.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from gateway.bus import Bus, Subscription, Tap
from gateway.model import Quality, Reading, Value

__all__ = ["DeviceReadings", "DeviceView", "FeedView", "LastReadings", "PointView",
           "ReadingsSnapshot"]

log = logging.getLogger(__name__)


class PointView(TypedDict):
    """The last reading of one point."""

    #: As the driver decoded it (``None`` unless the quality is good); a float that is not
    #: finite comes as its text (``"nan"``, ``"inf"``), so the snapshot stays valid JSON.
    value: Value
    quality: str
    #: The device's own timestamp (epoch seconds), if it sent one.
    source_ts: float | None
    #: When the gateway got it (epoch seconds).
    received_ts: float
    error: str | None


class DeviceView(TypedDict):
    """Counters of one device since the view started (or since the device was evicted)."""

    device: str
    #: Readings this view took (readings the bus dropped are not in it).
    readings: int
    #: Readings taken, per quality (every quality is listed, 0 included).
    by_quality: dict[str, int]
    #: ``received_ts`` of the newest reading.
    last_received_ts: float | None
    #: Points kept.
    points: int
    #: Points whose last reading has each quality (every quality listed).
    now_by_quality: dict[str, int]


class DeviceReadings(DeviceView):
    """A device's counters and the last reading of each of its points."""

    last: dict[str, PointView]


class FeedView(TypedDict):
    """The view's bus subscription, or its tap (fed inline: nothing queued or dropped, and
    ``maxsize`` 0 since there is no queue)."""

    name: str
    delivered: int
    dropped: int
    queued: int
    maxsize: int


class ReadingsSnapshot(TypedDict):
    devices: dict[str, DeviceReadings]
    #: None until :meth:`LastReadings.attach` or :meth:`LastReadings.run` was called.
    feed: FeedView | None
    #: Points evicted to stay within ``max_points``.
    evicted: int


class LastReadings:
    """Keeps the last reading of every point, fed by a bus subscription.

    Args:
        max_points: At most this many (device, point) pairs are kept.

    Raises:
        ValueError: ``max_points`` below 1.
    """

    def __init__(self, *, max_points: int = 10_000) -> None:
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        self.max_points = max_points
        self._devices: dict[str, _Device] = {}
        #: Every kept (device, point), the one updated longest ago first.
        self._age: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._feed: Subscription | Tap | None = None
        self.evicted = 0

    def attach(self, bus: Bus, name: str = "readings") -> Tap:
        """Be fed by ``bus`` inline, with each batch it publishes (no queue, no task)."""
        tap = bus.tap(name, self.take)
        self._feed = tap
        return tap

    def take(self, readings: Sequence[Reading]) -> None:
        """Keep the readings of one batch (mostly one device's: it is looked up once per
        run of its readings)."""
        debug = log.isEnabledFor(logging.DEBUG)
        age = self._age
        dev_id: str | None = None
        dev: _Device
        for reading in readings:
            device, point = reading.device, reading.point
            key = (device, point)
            if key in age:
                age.move_to_end(key)
            else:
                if len(age) >= self.max_points:
                    self._evict()
                    dev_id = None  # it may have taken this device with its last point
                age[key] = None
            if device != dev_id:
                found = self._devices.get(device)
                dev = self._devices[device] = _Device() if found is None else found
                dev_id = device
            if debug:
                self._log_change(dev.points.get(point), reading)
            dev.points[point] = reading
            dev.readings += 1
            dev.by_quality[reading.quality] += 1
            received = reading.received_ts
            if dev.last_received is None or received > dev.last_received:
                dev.last_received = received

    async def run(self, subscription: Subscription) -> None:
        """Take readings from ``subscription`` until cancelled.

        Args:
            subscription: From ``bus.subscribe(name, maxsize=..., overflow=Overflow.DROP_OLDEST)``.
        """
        self._feed = subscription
        while True:
            self.take(await subscription.get_batch())

    def devices(self) -> list[DeviceView]:
        """Every device seen, by id."""
        return [self._devices[d].view(d) for d in sorted(self._devices)]

    def snapshot(self, device: str | None = None) -> ReadingsSnapshot:
        """Plain, JSON-able data: every device (or only ``device``; an unknown one gives no
        devices), its counters and the last reading of each point."""
        ids = sorted(self._devices) if device is None else [device] * (device in self._devices)
        feed = self._feed
        view: FeedView | None = None
        if isinstance(feed, Tap):
            view = FeedView(name=feed.name, delivered=feed.delivered, dropped=0, queued=0,
                            maxsize=0)
        elif feed is not None:
            view = FeedView(name=feed.name, delivered=feed.delivered, dropped=feed.dropped,
                            queued=feed.queue.qsize(), maxsize=feed.queue.maxsize)
        return ReadingsSnapshot(devices={d: self._devices[d].detail(d) for d in ids},
                                feed=view, evicted=self.evicted)

    @staticmethod
    def _log_change(before: Reading | None, reading: Reading) -> None:
        """What the gateway reads, at --log-level DEBUG: each change, not each poll."""
        if before is None or (before.value, before.quality, before.error) != (
                reading.value, reading.quality, reading.error):
            why = f": {reading.error}" if reading.error else ""
            log.debug("%s.%s = %r (%s%s)", reading.device, reading.point, reading.value,
                      reading.quality.value, why)

    def _evict(self) -> None:
        (device, point), _ = self._age.popitem(last=False)
        dev = self._devices[device]
        del dev.points[point]
        if not dev.points:
            del self._devices[device]
        self.evicted += 1
        if self.evicted == 1:
            log.warning("last readings: more than %d points; forgetting the ones updated "
                        "longest ago (counted, logged once)", self.max_points)


@dataclass(slots=True)
class _Device:
    points: dict[str, Reading] = field(default_factory=dict)
    readings: int = 0
    by_quality: collections.Counter[Quality] = field(default_factory=collections.Counter)
    last_received: float | None = None

    def view(self, device: str) -> DeviceView:
        now = collections.Counter(r.quality for r in self.points.values())
        return DeviceView(device=device, readings=self.readings,
                          by_quality={q.value: self.by_quality[q] for q in Quality},
                          last_received_ts=self.last_received, points=len(self.points),
                          now_by_quality={q.value: now[q] for q in Quality})

    def detail(self, device: str) -> DeviceReadings:
        view = self.view(device)
        return DeviceReadings(
            device=view["device"], readings=view["readings"], by_quality=view["by_quality"],
            last_received_ts=view["last_received_ts"], points=view["points"],
            now_by_quality=view["now_by_quality"],
            last={p: _point(r) for p, r in sorted(self.points.items())})


def _point(reading: Reading) -> PointView:
    value = reading.value
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    return PointView(value=value, quality=reading.quality.value, source_ts=reading.source_ts,
                     received_ts=reading.received_ts, error=reading.error)
