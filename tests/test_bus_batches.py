"""The bus takes one batch per message or poll block; life-safety batches go first."""

from __future__ import annotations

import asyncio

import pytest

from gateway.bus import Bus, Overflow
from gateway.model import Quality, Reading

T0 = 1_767_225_600.0


def batch(device: str, *values: float) -> list[Reading]:
    return [Reading(device, f"p{i}", v, Quality.GOOD, T0) for i, v in enumerate(values)]


async def test_a_batch_is_taken_reading_by_reading_and_counted_in_readings() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=100)
    await bus.publish(batch("E1", 1, 2, 3))
    await bus.publish(Reading("E2", "p0", 9, Quality.GOOD, T0))  # a lone reading still goes
    assert (bus.published, alarms.queue.qsize()) == (4, 4)
    taken = [await alarms.get() for _ in range(3)]
    assert [(r.device, r.value) for r in taken] == [("E1", 1), ("E1", 2), ("E1", 3)]
    assert alarms.queue.qsize() == 1
    last = alarms.get_nowait()
    assert last is not None and (last.device, alarms.get_nowait()) == ("E2", None)
    assert alarms.delivered == 4
    async with asyncio.timeout(1):
        await alarms.queue.join()  # everything taken


async def test_a_subscriber_that_falls_behind_sheds_its_oldest_readings_across_batches() -> None:
    bus = Bus()
    feed = bus.subscribe("console", maxsize=5, overflow=Overflow.DROP_OLDEST)
    for n in range(3):
        await bus.publish(batch(f"E{n}", 1, 2, 3))  # 9 readings for room for 5
    assert (feed.dropped, feed.queue.qsize()) == (4, 5)
    kept = [feed.get_nowait() for _ in range(5)]
    assert [(r.device, r.point) for r in kept if r is not None] == [
        ("E1", "p1"), ("E1", "p2"), ("E2", "p0"), ("E2", "p1"), ("E2", "p2")]
    async with asyncio.timeout(1):
        await feed.queue.join()  # shed readings count as done


async def test_life_safety_batches_overtake_queued_telemetry() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=4)
    await bus.publish(batch("meter-1", 1, 2))
    await bus.publish(batch("meter-2", 3, 4))  # the routine bound is reached
    # A fire reading does not wait for room among the telemetry readings...
    async with asyncio.timeout(1):
        await bus.publish(batch("FP1", 1), urgent=True)
    # ...which a further telemetry batch does.
    late = asyncio.create_task(bus.publish(batch("meter-3", 5)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not late.done()
    first = await alarms.get()
    assert first.device == "FP1", "taken before the telemetry queued ahead of it"
    assert [(await alarms.get()).device for _ in range(2)] == ["meter-1", "meter-1"]
    async with asyncio.timeout(1):
        await late  # room again once a batch was taken
    rest = [(await alarms.get()).device for _ in range(3)]
    assert rest == ["meter-2", "meter-2", "meter-3"]


async def test_urgent_batches_have_a_bound_of_their_own() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=2)
    await bus.publish(batch("FP1", 1, 1), urgent=True)
    blocked = asyncio.create_task(bus.publish(batch("FP2", 1), urgent=True))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not blocked.done(), "a flood on the life-safety lane still pushes back"
    assert (await alarms.get()).device == "FP1"
    async with asyncio.timeout(1):
        await blocked
    assert [(await alarms.get()).device for _ in range(2)] == ["FP1", "FP2"]


async def test_a_cancelled_publisher_leaves_the_queue_usable() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=1)
    await bus.publish(batch("E1", 1))
    stuck = asyncio.create_task(bus.publish(batch("E2", 2)))
    waiting = asyncio.create_task(bus.publish(batch("E3", 3)))
    await asyncio.sleep(0)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert (await alarms.get()).device == "E1"
    async with asyncio.timeout(1):
        await waiting
    assert (await alarms.get()).device == "E3"
    assert alarms.queue.empty()


async def test_a_consumer_takes_a_whole_batch_in_one_call_urgent_ones_first() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=100)
    assert alarms.get_batch_nowait() is None
    await bus.publish(batch("meter-1", 1, 2, 3))
    await bus.publish(batch("meter-2", 4))
    await bus.publish(batch("FP1", 1, 1), urgent=True)
    first = await alarms.get()  # the urgent batch, partly taken reading by reading...
    rest = await alarms.get_batch()  # ...then the rest of it
    assert [(r.device, r.point) for r in (first, *rest)] == [("FP1", "p0"), ("FP1", "p1")]
    assert [r.value for r in await alarms.get_batch()] == [1, 2, 3]
    assert [r.device for r in alarms.get_batch_nowait() or ()] == ["meter-2"]
    assert alarms.get_batch_nowait() is None
    assert (alarms.delivered, alarms.queue.qsize()) == (6, 0)
    async with asyncio.timeout(1):
        await alarms.queue.join()  # every reading taken
    waiting = asyncio.create_task(alarms.get_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    await bus.publish(batch("meter-3", 7, 8))
    async with asyncio.timeout(1):
        assert [r.value for r in await waiting] == [7, 8]


async def test_taking_a_batch_makes_room_for_a_waiting_publisher() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=2)
    await bus.publish(batch("E1", 1, 2))
    late = asyncio.create_task(bus.publish(batch("E2", 3)))
    await asyncio.sleep(0)
    assert not late.done(), "alarms never drop: a full queue makes the publisher wait"
    assert len(await alarms.get_batch()) == 2
    async with asyncio.timeout(1):
        await late
    assert [r.device for r in await alarms.get_batch()] == ["E2"]


async def test_a_tap_is_fed_inline_with_every_batch_after_the_queues() -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=100)
    seen: list[tuple[str, int]] = []
    tap = bus.tap("readings", lambda b: seen.append((b[0].device, alarms.queue.qsize())))
    await bus.publish(batch("E1", 1, 2))
    await bus.publish(Reading("E2", "p0", 3, Quality.GOOD, T0))
    assert seen == [("E1", 2), ("E2", 3)], "called at once, once the queues have the batch"
    assert (tap.delivered, tap.failed, bus.taps) == (3, 0, (tap,))
    bus.untap(tap)
    await bus.publish(batch("E3", 4))
    assert len(seen) == 2


async def test_a_failing_tap_is_logged_once_counted_and_stops_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    alarms = bus.subscribe("alarms", maxsize=100)
    calls: list[int] = []

    def broken(readings: object) -> None:
        calls.append(1)
        raise KeyError("a view's bug")

    tap = bus.tap("readings", broken)
    kept: list[str] = []
    bus.tap("other", lambda b: kept.extend(r.device for r in b))
    with caplog.at_level("ERROR", logger="gateway.bus"):
        for n in range(3):
            await bus.publish(batch(f"E{n}", 1))
    assert (len(calls), tap.failed, tap.delivered) == (3, 3, 3)
    assert kept == ["E0", "E1", "E2"], "the other tap is fed all the same"
    assert alarms.queue.qsize() == 3, "the drivers and the alarm engine never notice"
    errors = [r for r in caplog.records if "readings failed" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None
