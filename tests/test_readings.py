"""The console's last-readings view, fed through a real bus: last values, per-device
counters, a slow view shedding instead of slowing the drivers, bounded memory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest

from gateway.bus import Bus, Overflow, Subscription
from gateway.model import Quality, Reading
from gateway.readings import LastReadings

T0 = 1_767_225_600.0


def reading(device: str, point: str, value: object, ts: float, *,
            quality: Quality = Quality.GOOD, source_ts: float | None = None,
            error: str | None = None) -> Reading:
    return Reading(device, point, value, quality, ts, source_ts, error)  # type: ignore[arg-type]


@asynccontextmanager
async def running(view: LastReadings, sub: Subscription) -> AsyncIterator[None]:
    task = asyncio.create_task(view.run(sub), name="readings")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled(), "run() ends only when cancelled"


async def publish(bus: Bus, sub: Subscription, readings: Iterable[Reading]) -> None:
    for r in readings:
        await bus.publish(r)
    async with asyncio.timeout(2):
        await sub.queue.join()  # the view has taken everything


async def test_the_last_reading_of_each_point_and_counters_per_device() -> None:
    bus = Bus()
    sub = bus.subscribe("console", maxsize=100, overflow=Overflow.DROP_OLDEST)
    view = LastReadings()
    async with running(view, sub):
        await publish(bus, sub, [
            reading("E1", "floor", 3, T0, source_ts=T0 - 0.5),
            reading("E1", "door", "open", T0 + 1),
            reading("E1", "floor", 4, T0 + 2, source_ts=T0 + 1.5),
            reading("M1", "kwh", None, T0 + 3, quality=Quality.COMM_LOSS, error="timeout"),
            reading("E1", "door", None, T0 + 4, quality=Quality.BAD, error="bad payload"),
        ])
        snap = view.snapshot()
    assert list(snap["devices"]) == ["E1", "M1"]
    e1 = snap["devices"]["E1"]
    assert e1["last"] == {
        "door": {"value": None, "quality": "bad", "source_ts": None, "received_ts": T0 + 4,
                 "error": "bad payload"},
        "floor": {"value": 4, "quality": "good", "source_ts": T0 + 1.5,
                  "received_ts": T0 + 2, "error": None}}
    assert (e1["readings"], e1["points"], e1["last_received_ts"]) == (4, 2, T0 + 4)
    assert e1["by_quality"] == {"good": 3, "comm-loss": 0, "bad": 1}
    assert e1["now_by_quality"] == {"good": 1, "comm-loss": 0, "bad": 1}
    assert snap["feed"] == {"name": "console", "delivered": 5, "dropped": 0, "queued": 0,
                            "maxsize": 100}
    assert [(d["device"], d["readings"], d["now_by_quality"]["comm-loss"])
            for d in view.devices()] == [("E1", 4, 0), ("M1", 1, 1)]
    only = view.snapshot("M1")
    assert list(only["devices"]) == ["M1"]
    assert only["devices"]["M1"]["last"]["kwh"]["error"] == "timeout"
    assert view.snapshot("nope")["devices"] == {}


async def test_a_view_that_falls_behind_sheds_old_readings_and_never_slows_the_bus(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=100)  # blocking, like the alarm engine's feed
    sub = bus.subscribe("console", maxsize=3, overflow=Overflow.DROP_OLDEST)
    view = LastReadings()
    # The view is not running at all: publishing must still never wait on it.
    async with asyncio.timeout(1):
        for n in range(10):
            await bus.publish(reading("E1", "floor", n, T0 + n))
    assert (sub.dropped, alarms.queue.qsize()) == (7, 10)
    async with running(view, sub):
        # Not queue.join(): the bus's drops take readings without task_done(), so join()
        # would wait forever. delivered counts what the view has taken (and processed: it
        # handles each reading before it awaits the next).
        async with asyncio.timeout(2):
            while sub.delivered < 3:
                await asyncio.sleep(0)
        snap = view.snapshot()
    point = snap["devices"]["E1"]["last"]["floor"]
    assert (point["value"], point["received_ts"]) == (9, T0 + 9), "the newest survives"
    assert snap["devices"]["E1"]["readings"] == 3, "counts what the view took"
    assert snap["feed"] is not None
    assert (snap["feed"]["dropped"], snap["feed"]["delivered"]) == (7, 3)
    assert caplog.text.count("not keeping up") == 1


async def test_memory_is_bounded_by_forgetting_the_points_updated_longest_ago(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    sub = bus.subscribe("console", maxsize=100, overflow=Overflow.DROP_OLDEST)
    view = LastReadings(max_points=3)
    async with running(view, sub):
        await publish(bus, sub, [
            reading("gone", "x", 1, T0),          # updated longest ago
            reading("E1", "floor", 1, T0 + 1),
            reading("E1", "door", "open", T0 + 2),
            reading("E1", "floor", 2, T0 + 3),    # E1.floor is now fresher than E1.door
            reading("M1", "kwh", 7.5, T0 + 4),    # the 4th point: "gone" goes
            reading("M1", "kw", 1.5, T0 + 5),     # the 5th: E1.door goes
        ])
        snap = view.snapshot()
    assert {d: sorted(v["last"]) for d, v in snap["devices"].items()} == {
        "E1": ["floor"], "M1": ["kw", "kwh"]}
    assert snap["evicted"] == 2 and view.evicted == 2
    assert [d["device"] for d in view.devices()] == ["E1", "M1"], "a device goes with its points"
    assert caplog.text.count("forgetting the ones updated longest ago") == 1
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


async def test_the_snapshot_is_strict_json_even_for_values_that_are_not_numbers() -> None:
    bus = Bus()
    sub = bus.subscribe("console", maxsize=10, overflow=Overflow.DROP_OLDEST)
    view = LastReadings()
    assert view.snapshot() == {"devices": {}, "feed": None, "evicted": 0}
    async with running(view, sub):
        await publish(bus, sub, [reading("M1", "kw", float("nan"), T0),
                                 reading("M1", "kwh", float("inf"), T0),
                                 reading("M1", "ok", True, T0), reading("M1", "t", 21.5, T0)])
    text = json.dumps(view.snapshot(), allow_nan=False)
    last = json.loads(text)["devices"]["M1"]["last"]
    assert {p: v["value"] for p, v in last.items()} == {"kw": "nan", "kwh": "inf", "ok": True,
                                                        "t": 21.5}


def test_an_impossible_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_points"):
        LastReadings(max_points=0)


async def test_at_debug_level_each_change_of_a_point_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    # `propgw run --log-level DEBUG` shows what the gateway reads: each change, not each poll.
    bus = Bus()
    sub = bus.subscribe("readings", maxsize=100, overflow=Overflow.DROP_OLDEST)
    view = LastReadings()
    caplog.set_level(logging.DEBUG, logger="gateway.readings")
    async with running(view, sub):
        await publish(bus, sub, [
            reading("E1", "floor", 3, T0), reading("E1", "floor", 3, T0 + 1),
            reading("E1", "floor", 4, T0 + 2),
            reading("E1", "floor", None, T0 + 3, quality=Quality.COMM_LOSS, error="timed out"),
            reading("E1", "floor", None, T0 + 4, quality=Quality.COMM_LOSS, error="timed out"),
        ])
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.readings"] == [
        "E1.floor = 3 (good)", "E1.floor = 4 (good)", "E1.floor = None (comm-loss: timed out)"]


async def test_a_view_attached_to_the_bus_is_fed_inline_with_each_batch() -> None:
    # As the gateway wires it: no queue and no task, so nothing to fall behind or shed.
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=100)
    view = LastReadings(max_points=3)
    tap = view.attach(bus)
    await bus.publish([reading("E1", "floor", 3, T0), reading("E1", "door", "open", T0)])
    snap = view.snapshot()  # no await in between: taken during publish
    assert {p: v["value"] for p, v in snap["devices"]["E1"]["last"].items()} == {
        "door": "open", "floor": 3}
    assert snap["feed"] == {"name": "readings", "delivered": 2, "dropped": 0, "queued": 0,
                            "maxsize": 0}
    for n in range(4):  # bounded all the same: the points updated longest ago go
        await bus.publish(reading("M1", f"p{n}", n, T0 + n))
    assert sorted(view.snapshot()["devices"]) == ["M1"] and view.evicted == 3
    assert (tap.delivered, tap.failed, alarms.queue.qsize()) == (6, 0, 6)


async def test_a_batch_that_evicts_its_own_device_keeps_the_newest_point() -> None:
    bus = Bus()
    view = LastReadings(max_points=1)
    view.attach(bus)
    await bus.publish([reading("A", "x", 1, T0), reading("A", "y", 2, T0)])
    snap = view.snapshot()
    assert {d: sorted(v["last"]) for d, v in snap["devices"].items()} == {"A": ["y"]}
    assert (snap["devices"]["A"]["readings"], view.evicted) == (1, 1), \
        "the device went with its last point and came back with the next one"
