"""PointStage: derived points and value expiry between the drivers and the bus (fake clock).

Readings go in as a driver delivers them (one batch = the readings of one Modbus read or one
MQTT message, delivered without a pause); what comes out is what the bus would carry.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.alarms import AlarmEngine, AlarmEvent
from gateway.bus import Bus
from gateway.cli import print_summary
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config, load_config_text
from gateway.errors import ConfigError
from gateway.model import Quality, Reading, Value
from gateway.points import PointStage

SITE = """
site: {id: s1, name: 测试, gateway_id: gw1}
brokers: {local: {host: 127.0.0.1}}
devices:
  - id: E1
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {name: mode_word, address: 6}
      - {name: car_status, address: 0}
      - {name: speed, address: 12, type: float32}
    derived:
      - {name: inspection, from: mode_word, bit: 0}
      - {name: fire_recall, from: mode_word, bit: 1}
      - name: service_mode
        expr: "2 if inspection else 3 if fire_recall else 1"
      - {name: mode_text, from: service_mode, map: {1: normal, 2: inspection}, default: other}
      - {name: per_hour, expr: "speed * 3600 / car_status"}
  - id: "door-{door}"
    driver: mqtt
    points:
      - {name: event, topic: "acs/{door}/event", path: event, type: string, expire_after: 30s, expire_to: none}
      - {name: open, topic: "acs/{door}/state", path: open, type: bool}
    derived:
      - {name: bad_card_open, expr: "event == 'card_invalid' and open"}
  - id: M1
    driver: modbus-tcp
    host: 127.0.0.1
    points: [{name: kwh, address: 0}]
"""


class Rig:
    def __init__(self, clock: FakeClock, config: GatewayConfig) -> None:
        self.clock = clock
        self.out: list[Reading] = []

        async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
            self.out.extend(readings)

        self.stage = PointStage(config.devices, clock, sink)

    async def batch(self, device: str, values: dict[str, Value],
                    quality: Quality = Quality.GOOD, ts: float | None = None) -> None:
        """One driver batch: readings delivered back to back, then the driver pauses."""
        stamp = self.clock.time() if ts is None else ts
        for point, value in values.items():
            good = quality is Quality.GOOD
            await self.stage.publish(Reading(device, point, value if good else None, quality,
                                             stamp, error=None if good else "timed out"))
        await self.clock.advance(0)

    def derived(self, point: str, device: str = "E1") -> list[Reading]:
        return [r for r in self.out if r.device == device and r.point == point]

    def values(self, point: str, device: str = "E1") -> list[Value]:
        return [r.value for r in self.derived(point, device)]


@pytest.fixture
async def rig(fake_clock: FakeClock) -> AsyncIterator[Rig]:
    r = Rig(fake_clock, load_config_text(SITE))
    task = asyncio.create_task(r.stage.run())
    await fake_clock.advance(0)
    yield r
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_bits_become_one_numbered_mode(rig: Rig) -> None:
    await rig.batch("E1", {"mode_word": 0, "car_status": 1, "speed": 1.5})
    await rig.batch("E1", {"mode_word": 0b01, "car_status": 1, "speed": 1.5})
    await rig.batch("E1", {"mode_word": 0b10, "car_status": 1, "speed": 1.5})
    assert rig.values("inspection") == [False, True, False]
    assert rig.values("service_mode") == [1, 2, 3]
    assert rig.values("mode_text") == ["normal", "inspection", "other"]
    # Every input reading passes through too, before the values derived from it.
    assert [r.point for r in rig.out[:3]] == ["mode_word", "car_status", "speed"]


async def test_bits_changing_in_one_read_never_show_a_mixed_value(
        fake_clock: FakeClock) -> None:
    # Two points read in one Modbus request: inspection ends and fire recall starts at once.
    # Derived per reading, service_mode would pass through 1 (normal) in between.
    rig = Rig(fake_clock, load_config_text(SITE.replace(
        "{name: fire_recall, from: mode_word, bit: 1}",
        "{name: fire_recall, from: car_status, bit: 1}")))
    task = asyncio.create_task(rig.stage.run())
    try:
        await rig.batch("E1", {"mode_word": 1, "car_status": 0, "speed": 0.0})
        await rig.batch("E1", {"mode_word": 0, "car_status": 2, "speed": 0.0})
        assert rig.values("service_mode") == [2, 3]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_point_read_again_ends_the_batch_without_a_pause(rig: Rig) -> None:
    # Two MQTT messages taken from the client's queue without the driver pausing.
    for word in (1, 2, 0):
        await rig.stage.publish(Reading("E1", "mode_word", word, Quality.GOOD, rig.clock.time()))
    assert rig.values("service_mode") == [2, 3], "the first two batches ended by a re-read"
    await rig.clock.advance(0)
    assert rig.values("service_mode") == [2, 3, 1], "the last one when the driver paused"


async def test_comm_loss_in_comm_loss_out_with_the_reason(rig: Rig) -> None:
    await rig.batch("E1", {"mode_word": 1, "car_status": 1, "speed": 1.0})
    await rig.batch("E1", {"mode_word": None, "car_status": None, "speed": None},
                    Quality.COMM_LOSS)
    last = rig.derived("service_mode")[-1]
    assert (last.quality, last.value) == (Quality.COMM_LOSS, None)
    assert last.error == "fire_recall: mode_word: timed out"  # the chain down to the cause
    # Comm-loss is worse than bad: with one input bad and one lost, the result is lost.
    await rig.stage.publish(Reading("E1", "speed", None, Quality.BAD, rig.clock.time(),
                                    error="float32 is nan"))
    await rig.stage.publish(Reading("E1", "car_status", None, Quality.COMM_LOSS,
                                    rig.clock.time(), error="no answer"))
    await rig.clock.advance(0)
    assert rig.derived("per_hour")[-1].quality is Quality.COMM_LOSS
    await rig.batch("E1", {"mode_word": 0, "car_status": 1, "speed": 1.0})
    assert rig.derived("service_mode")[-1].value == 1
    assert rig.derived("service_mode")[-1].quality is Quality.GOOD


async def test_no_value_until_every_input_was_read(rig: Rig) -> None:
    await rig.batch("E1", {"speed": 2.0})
    assert rig.derived("per_hour") == [], "car_status never read: no guess"
    assert rig.values("inspection") == [], "mode_word never read"
    await rig.batch("E1", {"car_status": 2})
    assert rig.values("per_hour") == [3600.0]


async def test_timestamp_is_the_newest_input(rig: Rig, fake_clock: FakeClock) -> None:
    await rig.batch("E1", {"speed": 2.0}, ts=100.0)
    await rig.batch("E1", {"car_status": 1}, ts=250.0)
    await rig.batch("E1", {"speed": 1.0}, ts=200.0)  # an older stamp arriving late
    assert [r.received_ts for r in rig.derived("per_hour")] == [250.0, 250.0]


async def test_an_expression_that_fails_gives_a_bad_reading_and_one_warning(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "gateway.points")
    for _ in range(3):
        await rig.batch("E1", {"mode_word": 0, "car_status": 0, "speed": 1.0})
    bad = rig.derived("per_hour")
    assert [(r.quality, r.value) for r in bad] == [(Quality.BAD, None)] * 3
    assert bad[0].error == "division by zero (/)"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "E1.per_hour cannot be computed" in warnings[0].getMessage()
    await rig.batch("E1", {"car_status": 1})
    assert rig.derived("per_hour")[-1].value == 3600.0
    assert "E1.per_hour has a value again" in caplog.text


async def test_devices_without_derived_points_pass_straight_through(rig: Rig) -> None:
    await rig.batch("M1", {"kwh": 5})
    assert [(r.device, r.point, r.value) for r in rig.out] == [("M1", "kwh", 5)]
    assert rig.stage.derived == 0


async def test_templated_device_derives_per_concrete_id(rig: Rig) -> None:
    await rig.batch("door-D1", {"event": "card_invalid", "open": True})
    await rig.batch("door-D2", {"event": "card_valid", "open": True})
    assert rig.values("bad_card_open", "door-D1") == [True]
    assert rig.values("bad_card_open", "door-D2") == [False]


# --------------------------------------------------------------------------- expiry


async def test_an_event_point_reads_its_reset_value_after_expire_after(
        rig: Rig, fake_clock: FakeClock) -> None:
    await rig.batch("door-D1", {"event": "card_invalid", "open": False})
    await fake_clock.advance(29.9)
    assert rig.values("event", "door-D1") == ["card_invalid"]
    await fake_clock.advance(0.1)
    assert rig.values("event", "door-D1") == ["card_invalid", "none"]
    expired = rig.derived("event", "door-D1")[-1]
    assert expired.quality is Quality.GOOD and expired.received_ts == fake_clock.time()
    # Derived points follow the expired value.
    assert rig.values("bad_card_open", "door-D1") == [False, False]
    await fake_clock.advance(300)
    assert len(rig.derived("event", "door-D1")) == 2, "expires once, not every 30 s"


async def test_a_new_message_restarts_the_countdown(rig: Rig, fake_clock: FakeClock) -> None:
    await rig.batch("door-D1", {"event": "card_invalid"})
    await fake_clock.advance(20)
    await rig.batch("door-D1", {"event": "card_invalid"})
    await fake_clock.advance(20)
    assert rig.values("event", "door-D1") == ["card_invalid"] * 2
    await fake_clock.advance(10)
    assert rig.values("event", "door-D1")[-1] == "none"
    assert rig.stage.expired == 1


async def test_comm_loss_stops_the_countdown(rig: Rig, fake_clock: FakeClock) -> None:
    await rig.batch("door-D1", {"event": "card_invalid"})
    await rig.batch("door-D1", {"event": None}, Quality.COMM_LOSS)
    await fake_clock.advance(60)
    assert [r.quality for r in rig.derived("event", "door-D1")] == [Quality.GOOD,
                                                                     Quality.COMM_LOSS]


async def test_expiry_runs_for_every_concrete_device(rig: Rig, fake_clock: FakeClock) -> None:
    await rig.batch("door-D1", {"event": "card_invalid"})
    await fake_clock.advance(10)
    await rig.batch("door-D2", {"event": "door_forced"})
    await fake_clock.advance(20)
    assert rig.values("event", "door-D1")[-1] == "none"
    assert rig.values("event", "door-D2") == ["door_forced"]
    await fake_clock.advance(10)
    assert rig.values("event", "door-D2")[-1] == "none"


async def test_the_stage_forgets_the_devices_updated_longest_ago(
        fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    out: list[Reading] = []

    async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
        out.extend(readings)

    stage = PointStage(load_config_text(SITE).devices, fake_clock, sink, max_devices=2)
    for door in ("D1", "D2", "D3"):
        await stage.publish(Reading(f"door-{door}", "open", True, Quality.GOOD, 0.0))
    assert stage.evicted == 1 and "more than 2 devices" in caplog.text
    # D1's inputs are gone: one new input is not enough for a value.
    await stage.publish(Reading("door-D1", "event", "x", Quality.GOOD, 0.0))
    await fake_clock.advance(0)
    with pytest.raises(ValueError, match="max_devices"):
        PointStage([], fake_clock, sink, max_devices=0)


# --------------------------------------------------------------------------- config errors


def problems(site: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(site, source="site.yaml")
    return [str(p) for p in caught.value.problems]


def with_derived(derived: str) -> str:
    return f"""site: {{id: s1, name: x, gateway_id: gw1}}
devices:
  - id: E1
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {{name: mode_word, address: 6}}
      - {{name: car_status, address: 0}}
    derived:
{derived}
"""


def test_unknown_input_is_reported_with_key_line_and_a_suggestion() -> None:
    (line,) = problems(with_derived(
        "      - {name: inspection, from: mode_word, bit: 0}\n"
        "      - name: service_mode\n"
        "        expr: \"2 if inspecton else 1\"\n"))
    assert line.startswith("devices[0].derived[1].expr (line 12): unknown point(s) inspecton; "
                           "did you mean 'inspection'?")
    assert "(this device has: car_status, inspection, mode_word)" in line


def test_cycle_between_derived_points_is_reported() -> None:
    (line,) = problems(with_derived(
        "      - {name: a, expr: \"b + 1\"}\n"
        "      - {name: b, expr: \"c * 2\"}\n"
        "      - {name: c, expr: \"a if car_status else 0\"}\n"))
    assert line == ("devices[0].derived[0] (line 10): derived points depend on each other "
                    "in a circle: a -> b -> c -> a")


def test_a_point_that_reads_itself_is_a_cycle() -> None:
    (line,) = problems(with_derived("      - {name: a, expr: \"a + 1\"}\n"))
    assert "in a circle: a -> a" in line


def test_bad_expression_syntax_is_reported_with_key_and_line() -> None:
    (line,) = problems(with_derived(
        "      - {name: ok, from: car_status}\n"
        "      - {name: bad, expr: \"car_status +* 2\"}\n"))
    assert line.startswith("devices[0].derived[1].expr (line 11): syntax error at column 13")


def test_an_unsafe_expression_is_a_config_error() -> None:
    (line,) = problems(with_derived(
        "      - {name: bad, expr: \"car_status.__class__\"}\n"))
    assert "devices[0].derived[0].expr (line 10): attribute access" in line


@pytest.mark.parametrize(("derived", "message"), [
    ("      - {name: car_status, from: mode_word}\n",
     "devices[0].derived[0].name (line 10): 'car_status' is already a point of this device"),
    ("      - {name: x, from: mode_word}\n      - {name: x, from: car_status}\n",
     "derived point 'x' is defined twice"),
    ("      - {name: x}\n", "needs exactly one of 'from' (another point) or 'expr'"),
    ("      - {name: x, from: mode_word, expr: \"1\"}\n", "needs exactly one of"),
    ("      - {name: x, expr: \"1\", bit: 2}\n", "'bit' goes with 'from'"),
    ("      - {name: x, from: mode_word, default: 0}\n", "'default' goes with 'map'"),
    ("      - {name: x, from: mode_word, bit: 64}\n", "less than or equal to 63"),
    ("      - {name: x, from: mode_word, colour: red}\n", "unknown key 'colour'"),
])
def test_other_mistakes(derived: str, message: str) -> None:
    assert any(message in p for p in problems(with_derived(derived)))


def test_rules_may_read_derived_points_and_unknown_ones_are_still_caught() -> None:
    site = with_derived("      - {name: inspection, from: mode_word, bit: 0}\n").replace(
        "    host: 127.0.0.1\n", "    host: 127.0.0.1\n    kind: elevator\n")
    rule = ("rules:\n  - {id: r, kind: elevator, category: c, priority: P1, "
            "when: {point: POINT, eq: true}, message: {zh: a, en: b}}\n")
    load_config_text(site + rule.replace("POINT", "inspection"))
    assert any("has no point(s) inspektion" in p
               for p in problems(site + rule.replace("POINT", "inspektion")))


def test_derived_points_come_from_a_profile_too(tmp_path: Path) -> None:
    profile = """name: lift-bits
driver: modbus
kind: elevator
points:
  - {name: mode_word, address: 6}
derived:
  - {name: inspection, from: mode_word, bit: 0}
  - {name: service_mode, expr: "2 if inspection else 1"}
"""
    site = """site: {id: s1, name: x, gateway_id: gw1}
devices:
  - id: E1
    driver: modbus-tcp
    host: 127.0.0.1
    profile: lift-bits.yaml
    derived:
      - {name: service_mode, expr: "4 if inspection else 1"}   # the device's own wins
"""
    (tmp_path / "lift-bits.yaml").write_text(profile)
    (tmp_path / "site.yaml").write_text(site)
    (dev,) = load_config(tmp_path / "site.yaml").devices
    assert [(d.name, d.expr) for d in dev.derived] == [
        ("inspection", None), ("service_mode", "4 if inspection else 1")]


def test_expire_after_and_expire_to_go_together() -> None:
    site = """site: {id: s1, name: x, gateway_id: gw1}
brokers: {local: {host: 127.0.0.1}}
devices:
  - id: D1
    driver: mqtt
    points:
      - {name: event, topic: acs/D1/event, path: event, expire_after: 30s}
"""
    (line,) = problems(site)
    assert "expire_after and expire_to go together" in line
    assert "devices[0].points[0] (line 7)" in line


def test_check_config_summary_counts_and_lists_derived_points() -> None:
    out = io.StringIO()
    print_summary(load_config_text(SITE), out)
    text = out.getvalue()
    assert "3 device(s) enabled (0 disabled), 6 point(s) and 6 derived:" in text
    assert "  E1 derives inspection, fire_recall, service_mode, mode_text, per_hour\n" in text


async def test_rules_messages_and_evidence_see_derived_points(fake_clock: FakeClock) -> None:
    site = SITE.replace("devices:\n", """rules:
  - id: inspection-note
    devices: [E1]
    when: {point: service_mode, eq: 2}
    category: elevator_fault
    priority: P3
    message: {zh: "{device}检修 {inspection}/{service_mode}", en: "{device} mode {service_mode}"}
devices:
""", 1)
    config = load_config_text(site)
    bus = Bus()
    announced: list[AlarmEvent] = []

    async def sink(event: AlarmEvent) -> None:
        announced.append(event)

    engine = AlarmEngine(config, fake_clock, sink)
    stage = PointStage(config.devices, fake_clock, bus.publish)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(engine.run(bus.subscribe("alarms"))), tg.create_task(stage.run())]
        await fake_clock.advance(0)
        for point, value in {"mode_word": 1, "car_status": 1, "speed": 1.0}.items():
            await stage.publish(Reading("E1", point, value, Quality.GOOD, fake_clock.time()))
        await fake_clock.advance(0)
        for task in tasks:
            task.cancel()
    (event,) = announced
    assert event.message_zh == "E1检修 true/2"
    assert event.evidence == {"service_mode": 2}



async def test_a_reload_gives_a_device_derived_points_from_inputs_read_after_it(
        fake_clock: FakeClock) -> None:
    # Started without derived points, then a reload (SIGHUP) adds them: they appear once
    # every input has been read again, never from a value held before the reload.
    before = load_config_text(SITE.split("    derived:", 1)[0])
    rig = Rig(fake_clock, before)
    task = asyncio.create_task(rig.stage.run())
    try:
        await rig.batch("E1", {"mode_word": 1, "car_status": 1, "speed": 1.5})
        assert rig.values("service_mode") == []
        rig.stage.reconfigure(load_config_text(SITE).devices)
        await rig.batch("E1", {"car_status": 1, "speed": 1.5})
        assert rig.values("service_mode") == []  # mode_word not read since the reload
        await rig.batch("E1", {"mode_word": 2, "car_status": 1, "speed": 1.5})
        assert rig.values("service_mode") == [3]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_lost_derived_point_is_silent_since_its_earliest_silent_input(
        rig: Rig) -> None:
    # A comm_loss rule on a derived point counts `for` from the device's last answer, as it
    # does for the points the device reports itself.
    await rig.batch("E1", {"mode_word": 1, "car_status": 1, "speed": 1.0})
    now = rig.clock.time()
    await rig.stage.publish(Reading("E1", "mode_word", None, Quality.COMM_LOSS, now,
                                    error="no answer", silent_since=now - 7))
    await rig.stage.publish(Reading("E1", "car_status", None, Quality.COMM_LOSS, now,
                                    error="no answer", silent_since=now - 3))
    await rig.clock.advance(0)
    lost = rig.derived("service_mode")[-1]
    assert lost.quality is Quality.COMM_LOSS
    assert lost.silent_since == now - 7


async def test_a_batch_goes_on_as_one_batch_with_its_derived_points(
        fake_clock: FakeClock) -> None:
    calls: list[tuple[list[tuple[str, Value]], bool]] = []

    async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
        calls.append(([(r.point, r.value) for r in readings], urgent))

    stage = PointStage(load_config_text(SITE).devices, fake_clock, sink)
    now = fake_clock.time()
    await stage.publish([Reading("E1", p, v, Quality.GOOD, now)
                         for p, v in (("mode_word", 1), ("car_status", 0), ("speed", 0.0))],
                        urgent=True)
    [(readings, urgent)] = calls
    assert urgent
    assert readings[:3] == [("mode_word", 1), ("car_status", 0), ("speed", 0.0)]
    assert ("service_mode", 2) in readings[3:], "derived from the whole batch, in it"
    assert stage.derived == len(readings) - 3
    # Nothing is left for the stage's task: the batch has ended.
    await stage.publish([Reading("M1", "kwh", 5, Quality.GOOD, now)])
    assert calls[1] == ([("kwh", 5)], False)


async def test_a_single_urgent_reading_stays_urgent(fake_clock: FakeClock) -> None:
    calls: list[tuple[list[str], bool]] = []

    async def sink(readings: Sequence[Reading], *, urgent: bool = False) -> None:
        calls.append(([r.point for r in readings], urgent))

    stage = PointStage(load_config_text(SITE).devices, fake_clock, sink)
    now = fake_clock.time()
    # E1 has derived points: the stage is not a pass-through, the single-reading path runs.
    await stage.publish(Reading("E1", "car_status", 0, Quality.GOOD, now), urgent=True)
    await stage.publish(Reading("E1", "speed", 0.0, Quality.GOOD, now))
    assert calls[:2] == [(["car_status"], True), (["speed"], False)]
