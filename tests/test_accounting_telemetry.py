"""Accounting's intervals go upstream through telemetry like any reading: the meters' and the
virtual buildings' interval points are selected, carry their register's unit and the start of
their interval, and every interval is sent (a burst after a silence too), never held back by
the deadband or the minimum interval meant for changing values."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gateway.accounting import Accounting
from gateway.bus import Bus, Overflow
from gateway.clock import FakeClock
from gateway.config import load_config_text
from gateway.errors import ConfigError
from gateway.model import Quality, Reading
from gateway.outbox import Outbox
from gateway.telemetry import TelemetryStage
from gateway.upstream import TelemetryMessage

SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
brokers: {platform: {host: 127.0.0.1, port: 1883}}
upstream: {broker: platform, topic_prefix: pm}
accounting: {}
telemetry: TELEMETRY
devices:
  - {id: M1, kind: energy_meter, driver: modbus-tcp, host: h, unit: 1, profile: chint-dtsu666,
     location: {building: A}}
  - {id: M2, kind: energy_meter, driver: modbus-tcp, host: h, unit: 2, profile: chint-dtsu666,
     location: {building: A}}
"""


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


async def test_every_interval_of_meters_and_buildings_is_sent_upstream() -> None:
    clock = FakeClock(start=0.0, wall_offset=at("2026-03-01 10:00"))
    config = load_config_text(SITE.replace("TELEMETRY", "{}"))
    bus = Bus()
    accounting = Accounting(config, clock, bus.publish, path=None)
    acct_feed = bus.subscribe("accounting", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    tele_feed = bus.subscribe("telemetry", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    async with Outbox(None, targets={"mqtt": {"telemetry", "alarms", "work-orders"}},
                      clock=clock, max_messages=10_000) as outbox:
        # The stage is driven by hand (take each reading, flush each step): what is tested
        # is what it selects and sends, not its timers.
        stage = TelemetryStage(config, clock, outbox, tele_feed)
        task = asyncio.create_task(accounting.run(acct_feed))
        sent: list[TelemetryMessage] = []
        try:
            # Both meters 2 kWh an hour; M2 is silent from 11:00 to 14:00: its hours 11-13
            # (and the building's) come in one burst with the reading at 14:00.
            for minutes in range(0, 4 * 60 + 1, 30):
                ts = at("2026-03-01 10:00") + minutes * 60
                await bus.publish(Reading("M1", "import_kwh", 100 + minutes / 30, Quality.GOOD,
                                          ts))
                if not 60 < minutes < 240:
                    await bus.publish(Reading("M2", "import_kwh", 500 + minutes / 30,
                                              Quality.GOOD, ts))
                await clock.advance(0)  # the accounting stage takes them and publishes
                while (reading := tele_feed.get_nowait()) is not None:
                    stage.take(reading)
                await stage.flush()
                while outbox.pending("mqtt"):
                    env = await outbox.next("mqtt")
                    outbox.delivered("mqtt", env)
                    sent.append(TelemetryMessage.model_validate_json(env.payload))
                await clock.advance(1800)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    hours = {(m.device, m.kind, p.received_at[11:16], p.unit, p.value)
             for m in sent for p in m.points if p.point == "import_kwh_hour"}
    # received_at is the interval's start (UTC): 10:00 Shanghai is 02:00Z.
    expected = {(dev, kind, f"{h:02d}:00", "kWh", 2.0)
                for dev, kind in (("M1", "energy_meter"), ("M2", "energy_meter"))
                for h in (2, 3, 4, 5)}
    expected |= {("building.A", "building", f"{h:02d}:00", "kWh", 4.0) for h in (2, 3, 4, 5)}
    assert hours == expected
    building = next(m for m in sent if m.device == "building.A")
    assert building.location.building == "A"
    # The register itself is still reported by exception like any point.
    assert any(p.point == "import_kwh" for m in sent for p in m.points)


def test_telemetry_selectors_may_name_the_building_devices() -> None:
    tele = '{include: [{kinds: [building]}, {devices: [building.A], points: ["*_hour"]}]}'
    config = load_config_text(SITE.replace("TELEMETRY", tele))
    assert config.telemetry is not None
    off = SITE.replace("TELEMETRY", tele).replace("accounting: {}\n", "")
    with pytest.raises(ConfigError, match="no device has kind 'building'"):
        load_config_text(off)
