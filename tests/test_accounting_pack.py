"""The energy pack reads the accounting's hourly numbers when accounting is on: night
consumption judges each night hour's energy, water-night-use each night hour's water; without
accounting the pack is what it was (instantaneous power, no water-night-use).

Real pieces: the bundled pack and profiles, the bus, the accounting stage and the alarm engine;
time is the fake clock, eight days of readings every 30 minutes in Asia/Shanghai."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gateway.accounting import Accounting
from gateway.alarms import AlarmEngine, AlarmEvent, AlarmState
from gateway.bus import Bus, Overflow
from gateway.clock import FakeClock
from gateway.config import BaselineCondition, GatewayConfig, RuleConfig, load_config_text
from gateway.errors import ConfigError
from gateway.model import Quality, Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
{accounting}
devices:
  - {{id: M1, driver: modbus-tcp, host: h, unit: 2, profile: eastron-sdm630, location: {{building: A}}}}
  - {{id: W1, driver: modbus-tcp, host: h, unit: 3, profile: water-meter-modbus, location: {{building: A}}}}
detectors: [energy]
"""


def site(accounting: str = "accounting: {}") -> GatewayConfig:
    return load_config_text(SITE.format(accounting=accounting))


def rule(config: GatewayConfig, rule_id: str) -> RuleConfig | None:
    return next((r for r in config.rules if r.id == rule_id), None)


def test_with_accounting_the_night_rule_reads_hourly_energy() -> None:
    on = site()
    night = rule(on, "energy.night-consumption")
    assert night is not None and night.for_ == 0
    assert isinstance(night.when, BaselineCondition)
    assert night.when.point == "import_kwh_hour" and night.when.only_during
    assert night.message.en.startswith("{device_name} ({location}) abnormal night consumption: "
                                       "{import_kwh_hour} kWh")
    water = rule(on, "energy.water-night-use")
    assert water is not None and isinstance(water.when, BaselineCondition)
    assert water.when.point == "total_volume_hour"
    assert rule(on, "energy.water-leak") is not None, "the continuous-flow rule stays"


@pytest.mark.parametrize("accounting", ["", "accounting: null", "accounting: {enabled: false}"])
def test_without_accounting_the_pack_is_unchanged(accounting: str) -> None:
    off = site(accounting)
    night = rule(off, "energy.night-consumption")
    assert night is not None and night.for_ == 1800
    assert "power_total" in str(night.when) and "import_kwh_hour" not in str(night.when)
    assert rule(off, "energy.water-night-use") is None
    assert rule(off, "energy.water-every-hour") is None


def test_a_rule_on_an_hour_point_needs_accounting_of_that_register() -> None:
    text = SITE.format(accounting="{accounting}").replace("detectors: [energy]\n", """
rules:
  - id: big-hour
    devices: [M1]
    when: {point: import_kwh_hour, gt: 100}
    category: abnormal_consumption
    priority: P3
    message: {zh: "{import_kwh_hour}", en: "{import_kwh_hour}"}
""")
    on = text.replace("{accounting}", "accounting: {}")
    assert load_config_text(on).rules[0].id == "big-hour"
    with pytest.raises(ConfigError, match=r"has no point.*import_kwh_hour"):
        load_config_text(text.replace("{accounting}", ""))
    with pytest.raises(ConfigError, match=r"has no point.*import_kwh_hour"):
        load_config_text(text.replace("{accounting}", "accounting: {counters: [total_volume]}"))


def kwh_per_hour(local: dt.datetime, abnormal: bool) -> float:
    if local.hour < 6:
        return 3.0 if abnormal and 1 <= local.hour < 3 else 1.0
    return 5.0  # the day uses far more than the night: never compared with the nights


def m3_per_hour(local: dt.datetime, abnormal: bool) -> float:
    if local.hour < 6:
        return 0.02 if abnormal else 0.0  # 20 L an hour: a running cistern
    return 0.3


@pytest.mark.slow  # ~17 s: eight days of the alarm engine's timers on the fake clock
async def test_an_abnormal_night_hour_raises_the_pack_rules(fake_clock: FakeClock) -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=SHANGHAI).timestamp()
    clock = FakeClock(start=0.0, wall_offset=start)
    config = site()
    bus = Bus()
    events: list[AlarmEvent] = []

    async def sink(event: AlarmEvent) -> None:
        events.append(event)

    engine = AlarmEngine(config, clock, sink)
    accounting = Accounting(config, clock, bus.publish, path=None)
    alarms = bus.subscribe("alarms")
    feed = bus.subscribe("accounting", maxsize=10_000, overflow=Overflow.DROP_OLDEST)
    tasks = [asyncio.create_task(engine.run(alarms)), asyncio.create_task(accounting.run(feed))]
    energy, water = 5000.0, 100.0
    try:
        for _ in range(8 * 48):  # eight days, every 30 minutes
            local = dt.datetime.fromtimestamp(clock.time(), SHANGHAI)
            abnormal = local.day == 8  # the seventh night, 03-08 00:00-06:00
            for device, point, value in (("M1", "import_kwh", energy),
                                         ("W1", "total_volume", water)):
                await bus.publish(Reading(device, point, value, Quality.GOOD, clock.time()))
            energy += kwh_per_hour(local, abnormal) / 2
            water += m3_per_hour(local, abnormal) / 2
            await clock.advance(1800)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def raised(rule_id: str) -> list[str]:
        return [dt.datetime.fromtimestamp(e.ts, SHANGHAI).strftime("%m-%d %H:%M")
                for e in events if e.rule_id == rule_id and e.state is AlarmState.ACTIVE]

    def cleared(rule_id: str) -> list[str]:
        return [dt.datetime.fromtimestamp(e.ts, SHANGHAI).strftime("%m-%d %H:%M")
                for e in events if e.rule_id == rule_id and e.state is AlarmState.CLEARED]

    # Hour 01:00-02:00 of 03-08 is closed by the reading at 02:00; 03:00-04:00 is normal again.
    assert raised("energy.night-consumption") == ["03-08 02:00"]
    assert cleared("energy.night-consumption") == ["03-08 04:00"]
    # Hour 00:00-01:00 is the first with water at night; at 07:00 the hour 06:00-07:00 (a day
    # hour, not judged) ends it.
    assert raised("energy.water-night-use") == ["03-08 01:00"]
    assert cleared("energy.water-night-use") == ["03-08 07:00"]
    assert raised("energy.water-leak") == []
    # Water in every hour from 03-07 06:00 (the day) through the leaking night: the hour
    # 06:00-07:00 came at 07:00, and 23.5 h later 24 hours in a row have had water.
    assert raised("energy.water-every-hour") == ["03-08 06:30"]
    message = next(e.message_en for e in events if e.rule_id == "energy.night-consumption")
    assert message == "M1 (Bldg A) abnormal night consumption: 3 kWh in one hour, well above " \
                      "previous nights", message
