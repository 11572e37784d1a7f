"""The accounting stage on the bus: per meter and per building intervals, published as
readings; state across a restart (a real state file); the whole gateway with a real Modbus
water meter and energy meter (simulators) on the fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.accounting import Accounting
from gateway.app import Gateway
from gateway.bus import Bus, Overflow
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading, Value
from simulators.encoding import encode
from simulators.modbus_server import SimModbusServer, SimUnit
from tests.gateway_support import running_gateway
from tests.support import free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")

SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1, timezone: Asia/Shanghai}}
state_dir: {state_dir}
accounting: {{}}
devices:
  - {{id: M1, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1, port: 1502, unit: 1,
     profile: eastron-sdm630, location: {{building: A}}}}
  - {{id: M2, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1, port: 1502, unit: 2,
     profile: chint-dtsu666, location: {{building: A}}}}
  - {{id: W1, kind: water_meter, driver: modbus-tcp, host: 127.0.0.1, port: 1502, unit: 3,
     profile: water-meter-modbus, location: {{building: A}}}}
  - {{id: M3, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1, port: 1502, unit: 4,
     profile: chint-dtsu666}}
"""


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, SHANGHAI).strftime("%m-%d %H:%M")


def config(tmp_path: Path) -> GatewayConfig:
    return load_config_text(SITE.format(state_dir=tmp_path))


class Rig:
    """An accounting stage fed through a real bus; collects what it publishes."""

    def __init__(self, cfg: GatewayConfig, clock: FakeClock, path: Path | None) -> None:
        self.bus = Bus()
        self.clock = clock
        self.stage = Accounting(cfg, clock, self.bus.publish, path=path)
        self.feed = self.bus.subscribe("accounting", maxsize=10_000,
                                       overflow=Overflow.DROP_OLDEST)
        self.out = self.bus.subscribe("out", maxsize=10_000, overflow=Overflow.DROP_OLDEST)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Rig:
        self.task = asyncio.create_task(self.stage.run(self.feed))
        await self.clock.advance(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    async def read(self, device: str, point: str, ts: float, value: float | None) -> None:
        quality = Quality.GOOD if value is not None else Quality.COMM_LOSS
        await self.bus.publish(Reading(device, point, value, quality, received_ts=ts))
        async with asyncio.timeout(5):
            await self.feed.queue.join()

    def published(self) -> dict[tuple[str, str, str], float]:
        got = {}
        while (r := self.out.get_nowait()) is not None:
            if r.point.endswith(("_hour", "_day")):
                assert r.quality is Quality.GOOD and r.received_ts == r.source_ts
                assert isinstance(r.value, float)
                got[(r.device, r.point, local(r.received_ts))] = r.value
        return got


async def test_meters_and_buildings_get_hours_and_days_as_readings(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    async with Rig(config(tmp_path), fake_clock, None) as rig:
        # Every 15 min from 22:00 to 01:00 (Shanghai): M1 2 kWh/h, M2 3 kWh/h, M3 (no
        # building) 1 kWh/h, W1 0.5 m³/h; M1 also reports power, which is not accounted.
        t = at("2026-03-01 22:00")
        for i in range(13):
            ts = t + i * 900
            await rig.read("M1", "import_kwh", ts, 100 + 0.5 * i)
            await rig.read("M1", "power_total", ts, 2000.0)
            await rig.read("M2", "import_kwh", ts, 7000 + 0.75 * i)
            await rig.read("M3", "import_kwh", ts, 1 + 0.25 * i)
            await rig.read("W1", "total_volume", ts, 12.5 + 0.125 * i)
        got = rig.published()
    assert got == {
        ("M1", "import_kwh_hour", "03-01 22:00"): 2.0, ("M1", "import_kwh_hour", "03-01 23:00"): 2.0,
        ("M1", "import_kwh_hour", "03-02 00:00"): 2.0,
        ("M2", "import_kwh_hour", "03-01 22:00"): 3.0, ("M2", "import_kwh_hour", "03-01 23:00"): 3.0,
        ("M2", "import_kwh_hour", "03-02 00:00"): 3.0,
        ("M3", "import_kwh_hour", "03-01 22:00"): 1.0, ("M3", "import_kwh_hour", "03-01 23:00"): 1.0,
        ("M3", "import_kwh_hour", "03-02 00:00"): 1.0,
        ("W1", "total_volume_hour", "03-01 22:00"): 0.5,
        ("W1", "total_volume_hour", "03-01 23:00"): 0.5,
        ("W1", "total_volume_hour", "03-02 00:00"): 0.5,
        ("building.A", "import_kwh_hour", "03-01 22:00"): 5.0,
        ("building.A", "import_kwh_hour", "03-01 23:00"): 5.0,
        ("building.A", "import_kwh_hour", "03-02 00:00"): 5.0,
        ("building.A", "total_volume_hour", "03-01 22:00"): 0.5,
        ("building.A", "total_volume_hour", "03-01 23:00"): 0.5,
        ("building.A", "total_volume_hour", "03-02 00:00"): 0.5,
        # The day of 03-01 began before the first reading: incomplete, not published.
    }


async def test_a_building_waits_for_a_silent_meter_and_gets_the_apportioned_total(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    async with Rig(config(tmp_path), fake_clock, None) as rig:
        t = at("2026-03-01 09:00")
        for i in range(5):  # 09:00-10:00 both meters, 1 kWh/h each
            await rig.read("M1", "import_kwh", t + i * 900, 0.25 * i)
            await rig.read("M2", "import_kwh", t + i * 900, 0.25 * i)
        assert rig.published()[("building.A", "import_kwh_hour", "03-01 09:00")] == 2.0
        # M2 falls silent at 10:00 and comes back at 12:00 having counted 4 kWh; M1 counts
        # on at 1 kWh/h: building hours 10 and 11 wait for M2.
        for i in range(5, 13):
            await rig.read("M1", "import_kwh", t + i * 900, 0.25 * i)
            await rig.read("M2", "import_kwh", t + i * 900, None)
        got = rig.published()
        assert ("building.A", "import_kwh_hour", "03-01 10:00") not in got
        assert got[("M1", "import_kwh_hour", "03-01 11:00")] == 1.0
        await rig.read("M2", "import_kwh", at("2026-03-01 12:00"), 5.0)
        got = rig.published()
    assert got == {("M2", "import_kwh_hour", "03-01 10:00"): 2.0,
                   ("M2", "import_kwh_hour", "03-01 11:00"): 2.0,
                   ("building.A", "import_kwh_hour", "03-01 10:00"): 3.0,
                   ("building.A", "import_kwh_hour", "03-01 11:00"): 3.0}


async def test_a_restart_neither_loses_nor_doubles_an_hour(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "accounting.json"
    cfg = config(tmp_path)
    t = at("2026-03-01 23:00")

    async def run(rig: Rig, steps: range) -> None:
        for i in steps:
            await rig.read("M1", "import_kwh", t + i * 600, 50 + i)  # 6 kWh/h
            await rig.read("M2", "import_kwh", t + i * 600, 900 + 2 * i)  # 12 kWh/h
            fake_clock_step = 600
            await fake_clock.advance(fake_clock_step)

    async with Rig(cfg, fake_clock, path) as first:
        await run(first, range(10))  # to 00:30
        got = first.published()
    saved = json.loads(path.read_text())
    assert saved["meters"]["M1.import_kwh"]["last"] == [t + 9 * 600, 59.0]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Down from 00:30 to 01:20 (the 00:40-01:10 readings never happen); a fresh stage (a
    # new process) carries on from the file.
    async with Rig(cfg, fake_clock, path) as second:
        await run(second, range(14, 31))  # 01:20 to 04:00
        got2 = second.published()
    assert set(got) & set(got2) == set()
    both = {**got, **got2}
    hours = {k[2]: v for k, v in both.items() if k[:2] == ("M1", "import_kwh_hour")}
    assert hours == {"03-01 23:00": 6.0, "03-02 00:00": 6.0, "03-02 01:00": 6.0,
                     "03-02 02:00": 6.0, "03-02 03:00": 6.0}
    assert {k[2]: v for k, v in both.items() if k[:2] == ("building.A", "import_kwh_hour")} \
        == {k: 18.0 for k in hours}
    # The local day 03-02 began at 00:00; it is still open at 04:00: no day yet, and none
    # published for 03-01, which began before the first reading.
    assert not [k for k in both if k[1].endswith("_day")]


async def test_a_damaged_state_file_starts_afresh_with_a_warning(
        tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "accounting.json"
    path.write_text("{not json")
    async with Rig(config(tmp_path), fake_clock, path) as rig:
        await rig.read("M1", "import_kwh", at("2026-03-01 10:00"), 1.0)
        await rig.read("M1", "import_kwh", at("2026-03-01 11:00"), 2.0)
        assert rig.published() == {("M1", "import_kwh_hour", "03-01 10:00"): 1.0}
    assert "cannot be read" in caplog.text
    assert json.loads(path.read_text())["version"] == 1


# ------------------------------------------------------------------ the whole gateway

E2E_SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1, timezone: Asia/Shanghai}}
state_dir: {state_dir}
accounting: {{}}
devices:
  - {{id: M1, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 1,
     profile: eastron-sdm630, poll_interval: 15m, timeout: 2s, location: {{building: A}}}}
  - {{id: W1, kind: water_meter, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 2,
     profile: water-meter-modbus, poll_interval: 15m, timeout: 2s, location: {{building: A}}}}
"""
START = at("2026-01-01 23:00")
RESET = at("2026-01-02 03:07")  # the energy register is reset to 0 and counts on
SWAP = at("2026-01-02 05:37")  # the water meter is replaced by one reading 3 000 L


def kwh(ts: float) -> float:
    """2 kWh an hour; from RESET on, counted from 0 again."""
    return 2 * (ts - RESET) / 3600 if ts >= RESET else 1000 + 2 * (ts - START) / 3600


def litres(ts: float) -> int:
    """500 L an hour; from SWAP on, a new meter that read 3 000 L when fitted."""
    return int(3000 + 500 * (ts - SWAP) / 3600 if ts >= SWAP
               else 123_456 + 500 * (ts - START) / 3600)


class Meters:
    def __init__(self) -> None:
        self.energy = SimUnit(1, size=512)
        self.water = SimUnit(2)
        self.water.holding.update({0: 0, 1: 0, 2: 0, 3: 0})

    def at(self, ts: float) -> None:
        """Set the registers as the meters read at wall time ``ts``."""
        self.energy.set_registers("input", 0x48, encode(kwh(ts), "float32"))
        self.water.set_registers("holding", 2, encode(litres(ts), "uint32"))


@asynccontextmanager
async def gateway_running(tmp_path: Path, clock: FakeClock, meters: Meters, port: int
                          ) -> AsyncIterator[tuple[Gateway, list[Reading]]]:
    gateway = Gateway(load_config_text(E2E_SITE.format(state_dir=tmp_path, port=port)),
                      clock=clock)
    taken = gateway.bus.subscribe("test", maxsize=100_000, overflow=Overflow.DROP_OLDEST)
    got: list[Reading] = []
    try:
        async with running_gateway(gateway):
            await polled(gateway, clock)
            yield gateway, got
    finally:
        while (r := taken.get_nowait()) is not None:
            if r.point.endswith(("_hour", "_day")):
                got.append(r)


async def polled(gateway: Gateway, clock: FakeClock) -> None:
    """Wait until both meters' readings of this instant are in and accounted."""
    async with asyncio.timeout(10):
        while True:
            snap = gateway.readings.snapshot()["devices"]
            stamps = [snap[d]["last"][p]["received_ts"] if d in snap and p in snap[d]["last"]
                      else None for d, p in (("M1", "import_kwh"), ("W1", "total_volume"))]
            if stamps == [clock.time()] * 2:
                break
            await asyncio.sleep(0.005)
    async with asyncio.timeout(10):
        for feed in gateway.bus.subscriptions:
            if feed.name in ("accounting", "alarms"):
                await feed.queue.join()


async def run_until(gateway: Gateway, clock: FakeClock, meters: Meters, end: float) -> None:
    while clock.time() < end:
        meters.at(clock.time() + 900)
        await clock.advance(900)
        await polled(gateway, clock)


@pytest.mark.slow  # 3-6 s: 100 Modbus polls of two meters through the whole gateway
async def test_hours_and_days_through_the_gateway_across_reset_swap_restart_and_midnight(
        tmp_path: Path) -> None:
    clock = FakeClock(wall_offset=START)
    meters = Meters()
    meters.at(START)
    port = free_port()
    async with SimModbusServer([meters.energy, meters.water], port=port):
        async with gateway_running(tmp_path, clock, meters, port) as (gateway, first):
            await run_until(gateway, clock, meters, at("2026-01-02 10:00"))
        # Stopped from 10:00 to 11:30 while the meters count on; a new process carries on.
        await clock.advance(5400)
        meters.at(clock.time())
        async with gateway_running(tmp_path, clock, meters, port) as (gateway, second):
            await run_until(gateway, clock, meters, at("2026-01-03 00:15"))
    published = [(r.device, r.point, local(r.received_ts), r.value) for r in first + second]
    assert len(published) == len({p[:3] for p in published}), "an interval published twice"
    series = {p[:3]: p[3] for p in published}

    def hourly(device: str, point: str) -> dict[str, Value]:
        return {k[2][6:]: v for k, v in series.items() if k[:2] == (device, point)}

    every_hour = {f"{h:02d}:00" for h in range(24)} | {"23:00"}
    energy = hourly("M1", "import_kwh_hour")
    water = hourly("W1", "total_volume_hour")
    assert set(energy) == set(water) == every_hour
    expected_kwh = {h: 1.5 if h == "03:00" else 2.0 for h in every_hour}  # 03:00-03:15 lost
    assert energy == pytest.approx(expected_kwh, abs=1e-4)
    expected_m3 = {h: 0.375 if h == "05:00" else 0.5 for h in every_hour}  # 05:30-05:45 lost
    assert water == pytest.approx(expected_m3, abs=0.002)
    assert hourly("building.A", "import_kwh_hour") == pytest.approx(energy, abs=1e-4)
    # Only the Shanghai day 01-02 (16:00 UTC to 16:00 UTC) was seen whole.
    days = {k: v for k, v in series.items() if k[1].endswith("_day")}
    # The SDM630 also has an export register (default counters): nothing exported.
    assert days.pop(("M1", "export_kwh_day", "01-02 00:00")) == 0.0
    assert days.pop(("building.A", "export_kwh_day", "01-02 00:00")) == 0.0
    assert days == {("M1", "import_kwh_day", "01-02 00:00"): pytest.approx(47.5, abs=1e-4),
                    ("building.A", "import_kwh_day", "01-02 00:00"): pytest.approx(47.5,
                                                                                  abs=1e-4),
                    ("W1", "total_volume_day", "01-02 00:00"): pytest.approx(11.875, abs=0.002),
                    ("building.A", "total_volume_day", "01-02 00:00"): pytest.approx(11.875,
                                                                                    abs=0.002)}
    # The console (the last reading of every point) shows them like any point.
    last = gateway.readings.snapshot("building.A")["devices"]["building.A"]["last"]
    assert last["import_kwh_hour"]["value"] == pytest.approx(2.0, abs=1e-4)


async def test_a_reload_keeps_counting_and_follows_new_meters_and_buildings(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    moved = SITE.replace("profile: eastron-sdm630, location: {{building: A}}",
                         "profile: eastron-sdm630, location: {{building: B}}").replace(
        "  - {{id: M3,", "  - {{id: M9, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1, "
                        "port: 1502, unit: 9, profile: chint-dtsu666}}\n  - {{id: M3,")
    async with Rig(config(tmp_path), fake_clock, None) as rig:
        t = at("2026-03-01 10:00")
        await rig.read("M1", "import_kwh", t, 0.0)
        await rig.read("M1", "import_kwh", t + 1800, 1.0)
        rig.stage.reconfigure(load_config_text(moved.format(state_dir=tmp_path)))
        await rig.read("M9", "import_kwh", t + 1800, 50.0)
        await rig.read("M1", "import_kwh", t + 3600, 2.0)
        await rig.read("M9", "import_kwh", t + 3600, 51.0)
        got = rig.published()
    assert got == {("M1", "import_kwh_hour", "03-01 10:00"): 2.0,
                   ("building.B", "import_kwh_hour", "03-01 10:00"): 2.0}


def test_a_reload_refuses_changes_to_the_accounting_section(tmp_path: Path) -> None:
    from gateway.reload import restart_only_changes

    old = config(tmp_path)
    new = load_config_text(SITE.format(state_dir=tmp_path).replace(
        "accounting: {}", "accounting: {max_gap: 2d}"))
    assert restart_only_changes(old, new) == ["accounting.max_gap"]
    moved = load_config_text(SITE.format(state_dir=tmp_path).replace("building: A", "building: B"))
    assert restart_only_changes(old, moved) == []


async def test_after_a_crash_intervals_come_again_and_the_latest_values_add_up(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "accounting.json"
    cfg = config(tmp_path)
    t = at("2026-03-01 23:00")
    # 10 kWh from 23:00 to 23:50, then 1 kWh an hour: not linear, so re-apportioning shows.
    values = {i: (10.0 * i / 5 if i <= 5 else 10.0 + (i - 5) / 6) for i in range(19)}

    async def feed(rig: Rig, steps: range) -> None:
        for i in steps:
            await rig.read("M1", "import_kwh", t + i * 600, values[i])
            await fake_clock.advance(600)

    async with Rig(cfg, fake_clock, path) as first:
        await feed(first, range(4))  # to 23:30; the state is written (save_every 60 s)
        kept = path.read_bytes()
        await feed(first, range(4, 10))  # to 00:30: hour 23 published
        before = first.published()
    path.write_bytes(kept)  # the process died: its last writes are gone
    async with Rig(cfg, fake_clock, path) as second:
        await feed(second, range(13, 19))  # 01:10 to 02:00
        after = second.published()
    assert before[("M1", "import_kwh_hour", "03-01 23:00")] == pytest.approx(10 + 1 / 6)
    assert ("M1", "import_kwh_hour", "03-01 23:00") in after, "published again"
    latest = {**before, **after}
    hours = [v for k, v in latest.items() if k[:2] == ("M1", "import_kwh_hour")]
    assert len(hours) == 3
    assert sum(hours) == pytest.approx(values[18] - values[0])


def test_the_health_counts_accounting(tmp_path: Path) -> None:
    gateway = Gateway(config(tmp_path), clock=FakeClock())
    assert gateway.health()["accounting"] == {"meters": 5, "published": 0, "steps": 0,
                                              "dropped": 0}
    plain = Gateway(load_config_text(SITE.format(state_dir=tmp_path).replace(
        "accounting: {}\n", "")), clock=FakeClock())
    assert "accounting" not in plain.health() and plain.accounting is None


async def test_metrics_count_intervals_and_steps(tmp_path: Path, fake_clock: FakeClock) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from gateway.metrics import GatewayCollector, accounting_metrics

    async with Rig(config(tmp_path), fake_clock, None) as rig:
        collector = GatewayCollector()
        collector.add("accounting", accounting_metrics(rig.stage))
        t = at("2026-03-01 10:00")
        await rig.read("M1", "import_kwh", t, 500.0)
        await rig.read("M1", "import_kwh", t + 1800, 1.0)  # a replaced meter
        await rig.read("M1", "import_kwh", t + 3600, 2.0)
        samples = {(s.name, s.labels.get("kind")): s.value
                   for f in text_string_to_metric_families(collector.exposition().decode())
                   for s in f.samples}
    assert samples[("propgw_accounting_registers", None)] == 5
    assert samples[("propgw_accounting_intervals_total", None)] == 1  # A waits for M2
    assert samples[("propgw_accounting_steps_total", "restart")] == 1
    assert samples[("propgw_accounting_steps_total", "gap")] == 0
