"""Every rule kind on the fake clock, driven by readings through the bus."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from gateway.alarms import Detection, RuleEvaluator
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.model import Quality, Reading, Value
from tests.rules_support import RuleRig, running_rigs

BASE = """
site: {{id: s1, name: s, gateway_id: g, timezone: Asia/Shanghai}}
devices:
  - id: D1
    driver: modbus-tcp
    host: 127.0.0.1
    kind: meter
    points: [{{name: v, address: 0}}, {{name: t, address: 1}}, {{name: door, address: 2}}, {{name: event, address: 3}}]
rules:
  - id: r
    kind: meter
    when: {when}
    for: {delay}
    category: test
    priority: P2
    message: {{zh: 测试, en: test}}
"""


class Rig(RuleRig):
    def __init__(self, when: str, clock: FakeClock, delay: str = "0s") -> None:
        super().__init__(clock, load_config_text(BASE.format(when=when, delay=delay)))

    async def send(self, point: str, value: Value, quality: Quality = Quality.GOOD) -> None:
        await self.publish("D1", quality, **{point: value})


class RigFactory(Protocol):
    def __call__(self, when: str, delay: str = "0s") -> Rig: ...


@pytest.fixture
async def rig_factory(fake_clock: FakeClock) -> AsyncIterator[RigFactory]:
    async with running_rigs() as runner:

        def make(when: str, delay: str = "0s") -> Rig:
            return runner.start(Rig(when, fake_clock, delay))

        yield make


async def test_threshold_deadband_stops_chatter(rig_factory: RigFactory) -> None:
    rig: Rig = rig_factory("{point: v, gt: 242, deadband: 4}")
    for value in (240, 243, 241, 239.5, 243, 237.9, 243):
        await rig.send("v", value)
    # 243 raises; 241 and 239.5 stay inside the deadband (release only below 238); 243 again
    # changes nothing; 237.9 clears; 243 raises again.
    assert rig.states == [True, False, True]


async def test_low_limit_with_deadband(rig_factory: RigFactory) -> None:
    rig: Rig = rig_factory("{point: v, lt: 198, deadband: 2}")
    for value in (220, 197, 199, 200.5):
        await rig.send("v", value)
    assert rig.states == [True, False]


async def test_stale_fires_on_silence_from_start_and_after_last_good(
        rig_factory: RigFactory, fake_clock: FakeClock) -> None:
    rig: Rig = rig_factory("{stale: 60s, point: v}")
    await fake_clock.advance(59)
    assert rig.states == []
    await fake_clock.advance(2)
    assert rig.states == [True], "a point that never reported is stale too"
    await rig.send("v", 230)
    assert rig.states == [True, False]
    await rig.send("v", None, Quality.COMM_LOSS)  # comm-loss readings are not "good"
    await fake_clock.advance(61)
    assert rig.states == [True, False, True]


async def test_device_wide_comm_loss(rig_factory: RigFactory) -> None:
    rig: Rig = rig_factory("{comm_loss: true}")
    await rig.send("v", 230)
    await rig.send("t", None, Quality.COMM_LOSS)
    assert rig.states == [True]
    await rig.send("t", 20)
    assert rig.states == [True, False]


async def test_rate_of_change(rig_factory: RigFactory, fake_clock: FakeClock) -> None:
    rig: Rig = rig_factory("{point: t, rate_gt: 5, per: 60s}")
    await rig.send("t", 20.0)
    await fake_clock.advance(30)
    await rig.send("t", 21.0)  # +2 per minute
    assert rig.states == []
    await fake_clock.advance(30)
    await rig.send("t", 30.0)  # 30 s window: 21 -> 30 in 30 s = +18/min
    assert rig.states == [True]
    await fake_clock.advance(120)  # no new data: history ages out -> unknown, stays active
    assert rig.states == [True]


async def test_counter_of_events_in_a_sliding_window(rig_factory: RigFactory,
                                                     fake_clock: FakeClock) -> None:
    rig: Rig = rig_factory("{point: event, count: invalid_card, at_least: 5, within: 60s}")
    for _ in range(4):
        await rig.send("event", "invalid_card")
        await fake_clock.advance(10)
    await rig.send("event", "valid_card")
    assert rig.states == []
    await rig.send("event", "invalid_card")  # the fifth within 60 s
    assert rig.states == [True]
    await fake_clock.advance(31)  # the first has left the window at the next tick
    assert rig.states == [True, False]


async def test_counter_of_transitions_counts_cycles_not_polls(
        rig_factory: RigFactory, fake_clock: FakeClock) -> None:
    rig: Rig = rig_factory("{point: door, count: 2, at_least: 5, within: 120s, "
                           "mode: transitions}")
    for _ in range(20):  # door held open: polled 20 times, one transition
        await rig.send("door", 2)
    assert rig.states == []
    for _ in range(4):
        await rig.send("door", 1)
        await rig.send("door", 2)
    assert rig.states == [True]


async def test_schedule_window_in_site_time_wraps_midnight(fake_clock: FakeClock) -> None:
    # Fake wall time: pick 2026-01-01 21:59 Asia/Shanghai.
    start = dt.datetime(2026, 1, 1, 21, 59, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    clock = FakeClock(start=0.0, wall_offset=start.timestamp())
    rig = Rig('{all: [{schedule: {from: "22:00", to: "06:00"}}, {point: v, gt: 1}]}', clock)
    task = asyncio.create_task(rig.rules.run(rig.feed))
    await rig.send("v", 5)
    assert rig.states == []
    await clock.advance(61)
    assert rig.states == [True]
    await clock.advance(8 * 3600)  # 06:00 next morning
    assert rig.states == [True, False]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_on_delay_with_time_dependent_leaf(rig_factory: RigFactory,
                                                 fake_clock: FakeClock) -> None:
    rig: Rig = rig_factory("{stale: 10s, point: v}", delay="20s")
    await fake_clock.advance(29)
    assert rig.states == []
    await fake_clock.advance(2)
    assert rig.states == [True]


def test_bad_conditions_are_explained() -> None:
    from gateway.errors import ConfigError

    for when, message in [
        ("{point: v, eq: 1, deadband: 2}", "deadband goes with gt, ge, lt or le"),
        ("{point: v, rate_gt: 1, rate_lt: 2}", "exactly one of rate_gt"),
        ("{schedule: {from: '25:00', to: '06:00'}}", "schedule.from"),
        ("{bogus: 1}", "a condition is"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_config_text(BASE.format(when=when, delay="0s"))
        assert message in str(info.value), str(info.value)


async def test_counter_reset_counts_within_one_stop(rig_factory: RigFactory) -> None:
    rig: Rig = rig_factory("{point: door, count: 2, at_least: 3, within: 600s, "
                           "mode: transitions, reset: {point: t, eq: 1}}")
    for _ in range(2):  # two openings at one floor, then the car runs (t=1 stands for running)
        await rig.send("door", 2)
        await rig.send("door", 1)
    await rig.send("t", 1)
    await rig.send("t", 0)
    for _ in range(2):
        await rig.send("door", 2)
        await rig.send("door", 1)
    assert rig.states == [], "openings at different stops must not add up"
    await rig.send("door", 2)
    assert rig.states == [True]


GROUP = """
site: {id: s1, name: s, gateway_id: g}
devices:
  - {id: M1, driver: modbus-tcp, host: h, kind: meter, location: {zone: feeder-A}, points: [{name: v, address: 0}]}
  - {id: M2, driver: modbus-tcp, host: h, kind: meter, location: {zone: feeder-A}, points: [{name: v, address: 0}]}
  - {id: M3, driver: modbus-tcp, host: h, kind: meter, location: {zone: feeder-B}, points: [{name: v, address: 0}]}
rules:
  - id: feeder-silent
    kind: meter
    group_by: zone
    when: {all_devices: {comm_loss: true}}
    category: power_loss
    priority: P1
    message: {zh: "{location}整条馈线的电表都无响应", en: "every meter on {location} is silent"}
"""


async def test_group_rule_fires_only_when_the_whole_feeder_is_silent(fake_clock: FakeClock) -> None:
    seen: list[Detection] = []

    async def sink(d: Detection) -> None:
        seen.append(d)

    bus = Bus()
    feed = bus.subscribe("alarms")
    rules = RuleEvaluator(load_config_text(GROUP), fake_clock, sink)
    task = asyncio.create_task(rules.run(feed))

    async def send(device: str, ok: bool) -> None:
        await bus.publish(Reading(device, "v", 230.0 if ok else None,
                                  Quality.GOOD if ok else Quality.COMM_LOSS, fake_clock.time()))
        await fake_clock.advance(0)

    for dev in ("M1", "M2", "M3"):
        await send(dev, True)
    await send("M1", False)
    await send("M3", False)  # feeder B has only M3: the whole feeder is silent
    assert [(d.device, d.active) for d in seen] == [("zone:feeder-B", True)]
    await send("M2", False)
    assert [(d.device, d.active) for d in seen][-1] == ("zone:feeder-A", True)
    alarm = seen[-1]
    assert alarm.alarm_id == "feeder-silent@zone:feeder-A"
    assert sorted(d.alarm_id for d in rules.active()) == [
        "feeder-silent@zone:feeder-A", "feeder-silent@zone:feeder-B"], "each group once"
    assert alarm.evidence == {"M1": True, "M2": True}
    assert alarm.message_en == "every meter on zone feeder-A is silent"
    await send("M1", True)
    assert [(d.device, d.active) for d in seen][-1] == ("zone:feeder-A", False)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_quantifiers_and_group_by_go_together() -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="needs all_devices or any_device"):
        load_config_text(GROUP.replace("{all_devices: {comm_loss: true}}", "{comm_loss: true}"))
    with pytest.raises(ConfigError, match="need 'group_by'"):
        load_config_text(GROUP.replace("    group_by: zone\n", ""))


async def test_rolling_baseline_flags_consumption_well_above_normal(
        rig_factory: RigFactory, fake_clock: FakeClock) -> None:
    rig: Rig = rig_factory("{point: v, above_baseline: 1.5, min_excess: 100, learn: 1h, "
                           "min_samples: 20}")
    for i in range(30):  # a normal level around 1000 W
        await rig.send("v", 1000 + (i % 3) * 10)
        await fake_clock.advance(60)
    assert rig.states == []
    await rig.send("v", 1400)  # 40 % above: not enough
    assert rig.states == []
    await rig.send("v", 1700)
    assert rig.states == [True]
    await rig.send("v", 1010)
    assert rig.states == [True, False]


async def test_baseline_is_unknown_until_learned(rig_factory: RigFactory) -> None:
    rig: Rig = rig_factory("{point: v, above_baseline: 1.5, min_samples: 20}")
    await rig.send("v", 10)
    await rig.send("v", 10_000)
    assert rig.states == []
