"""Report by exception, point by point, on the fake clock: deadbands, min and max intervals,
quality changes."""

from __future__ import annotations

import math

import pytest

from gateway.clock import FakeClock
from gateway.config import ReportPolicy
from gateway.model import Quality, Reading, Value
from gateway.telemetry import ReportByException, significant

POLICY = ReportPolicy(deadband=0.5, deadband_percent=1.0, min_interval=10, max_interval=900)


def reading(value: Value, quality: Quality = Quality.GOOD, point: str = "p") -> Reading:
    return Reading("D", point, value if quality is Quality.GOOD else None, quality,
                   received_ts=1_767_225_600.0, error=None if quality is Quality.GOOD else "x")


class Rig:
    """The engine driven on a fake clock, as the stage drives it: offers, and due() each
    second."""

    def __init__(self, policy: ReportPolicy = POLICY) -> None:
        self.clock = FakeClock()
        self.rbe = ReportByException()
        self.policy = policy
        self.sent: list[tuple[float, Value, str, str]] = []

    def offer(self, value: Value, quality: Quality = Quality.GOOD) -> None:
        report = self.rbe.offer(reading(value, quality), self.policy, self.clock.monotonic())
        if report is not None:
            self._log(report.reading, report.reason)

    async def advance(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            await self.clock.advance(1)
            for report in self.rbe.due(self.clock.monotonic()):
                self._log(report.reading, report.reason)

    def _log(self, r: Reading, reason: str) -> None:
        self.sent.append((self.clock.monotonic() - 1000.0, r.value, r.quality.value, reason))


@pytest.mark.parametrize(("new", "old", "expected"), [
    (100.9, 100.0, False),   # 1 % of 100 is the band (> 0.5 absolute)
    (101.5, 100.0, True),
    (0.4, 0.0, False),       # near zero the absolute 0.5 is the floor
    (0.6, 0.0, True),
    (-101.5, -100.0, True),
    ("on", "off", True),     # not numeric: any change
    ("on", "on", False),
    (True, 1, True),         # a bool is not a number
    (None, None, False),
    (math.nan, math.nan, False),
    (math.inf, 5.0, True),
])
def test_deadband(new: Value, old: Value, expected: bool) -> None:
    assert significant(new, old, POLICY) is expected


def test_deadband_zero_reports_any_change() -> None:
    zero = ReportPolicy(deadband=0, deadband_percent=0)
    assert significant(1.0001, 1.0, zero)
    assert not significant(1.0, 1.0, zero)


async def test_first_reading_is_reported_at_once_then_only_changes_beyond_the_band() -> None:
    rig = Rig()
    rig.offer(100.0)
    await rig.advance(20)
    rig.offer(100.5)   # within 1 %
    rig.offer(100.9)
    assert rig.sent == [(0, 100.0, "good", "first")]
    assert rig.rbe.counters.suppressed == 2
    rig.offer(102.0)
    assert rig.sent[-1] == (20, 102.0, "good", "change")
    # The band is measured from the last *reported* value: creeping does not hide a move.
    for step in (102.5, 102.9, 103.1):
        await rig.advance(11)
        rig.offer(step)
    assert rig.sent[-1] == (53, 103.1, "good", "change")


async def test_min_interval_holds_a_change_and_sends_the_newest_value() -> None:
    rig = Rig()
    rig.offer(100.0)
    await rig.advance(3)
    rig.offer(110.0)
    await rig.advance(2)
    rig.offer(120.0)
    assert len(rig.sent) == 1, "no second report within min_interval"
    await rig.advance(4)
    assert len(rig.sent) == 1
    await rig.advance(1)
    assert rig.sent[-1] == (10, 120.0, "good", "change"), "at min_interval, the newest value"
    assert rig.rbe.counters.deferred == 2


async def test_a_change_that_goes_back_within_min_interval_is_not_sent() -> None:
    rig = Rig()
    rig.offer(100.0)
    await rig.advance(2)
    rig.offer(150.0)
    await rig.advance(2)
    rig.offer(100.2)
    await rig.advance(60)
    assert rig.sent == [(0, 100.0, "good", "first")]


async def test_heartbeat_every_max_interval_even_unchanged() -> None:
    rig = Rig()
    rig.offer(5.0)
    await rig.advance(899)
    assert len(rig.sent) == 1
    await rig.advance(1)
    assert rig.sent[-1] == (900, 5.0, "good", "heartbeat")
    rig.offer(5.1)  # within the band: the heartbeat carries the newest value
    await rig.advance(900)
    assert rig.sent[-1] == (1800, 5.1, "good", "heartbeat")
    # A change resets the heartbeat's timer.
    await rig.advance(100)
    rig.offer(50.0)
    await rig.advance(899)
    assert rig.sent[-1] == (1900, 50.0, "good", "change")
    await rig.advance(1)
    assert rig.sent[-1] == (2800, 50.0, "good", "heartbeat")


async def test_quality_changes_are_always_reported_in_order() -> None:
    rig = Rig()
    rig.offer(7.0)
    await rig.advance(30)
    rig.offer(None, Quality.COMM_LOSS)
    assert rig.sent[-1] == (30, None, "comm-loss", "quality")
    # Back to good 2 s later, at the very value it had: still a change of quality, reported
    # once min_interval has passed.
    await rig.advance(2)
    rig.offer(7.0)
    await rig.advance(7)
    assert len(rig.sent) == 2
    await rig.advance(1)
    assert rig.sent[-1] == (40, 7.0, "good", "quality")


async def test_a_comm_loss_shorter_than_min_interval_is_not_lost() -> None:
    rig = Rig()
    rig.offer(7.0)
    await rig.advance(2)
    rig.offer(None, Quality.COMM_LOSS)   # within min_interval of the first report
    await rig.advance(2)
    rig.offer(7.0)                       # and over before it could be sent
    await rig.advance(30)
    assert rig.sent == [(0, 7.0, "good", "first"), (10, None, "comm-loss", "quality"),
                        (20, 7.0, "good", "quality")]


async def test_bad_and_comm_loss_are_distinct_qualities() -> None:
    rig = Rig()
    rig.offer(None, Quality.BAD)
    await rig.advance(10)
    rig.offer(None, Quality.COMM_LOSS)
    assert rig.sent[-1] == (10, None, "comm-loss", "quality")
    await rig.advance(20)
    rig.offer(None, Quality.COMM_LOSS)
    assert len(rig.sent) == 2, "the same bad quality again is no news"


async def test_points_are_independent_and_bounded() -> None:
    clock = FakeClock()
    rbe = ReportByException(max_points=2)
    now = clock.monotonic()
    assert rbe.offer(reading(1, point="a"), POLICY, now) is not None
    assert rbe.offer(reading(1, point="b"), POLICY, now) is not None
    assert rbe.offer(reading(1, point="c"), POLICY, now) is None
    assert rbe.counters.untracked == 1
    assert rbe.offer(reading(2, point="a"), POLICY, now + 1) is None
    assert [r.reading.point for r in rbe.due(now + 10)] == ["a"]


async def test_many_reports_do_not_grow_the_schedule_without_bound() -> None:
    rig = Rig(ReportPolicy(deadband=0, deadband_percent=0, min_interval=0, max_interval=900))
    for i in range(5000):
        rig.offer(float(i))
    assert len(rig.sent) == 5000
    assert len(rig.rbe._heap) <= 4 * len(rig.rbe) + 1025
