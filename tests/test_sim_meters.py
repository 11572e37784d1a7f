"""Energy and water meter simulators: register maps vs profiles, and the gateway reading them.

Tier (b): real pymodbus servers on loopback, read by the gateway's own ``ModbusLink`` through the
shipped profiles. The simulators encode with ``simulators.encoding``, the gateway decodes with
``drivers.modbus``: the two share nothing but the register maps written down as data, and these
tests check those maps against each other and against the wire.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.modbus import ModbusLink, build_modbus_links, decode_point
from gateway.clock import SystemClock
from gateway.config import ModbusPoint, ModbusTcpDevice, load_config_text
from gateway.model import Quality
from simulators.base import ActionError
from simulators.meter_maps import DTSU666_MAP, REGISTER_MAPS, RegisterMap
from simulators.meters import (
    DayClock,
    EnergyMeterSim,
    EnergyModel,
    MeterBus,
    MeterSim,
    WaterMeterSim,
    load_fraction,
    water_demand,
)
from simulators.modbus_server import SimModbusServer
from tests.support import free_port
from tests.test_modbus_support import Collector, running

PROFILES = Path(__file__).resolve().parents[1] / "config" / "profiles"
EVENING = 19.5 * 3600
NIGHT = 3 * 3600
#: Values go over the wire as float32: about 7 significant digits survive.
F32 = 1e-6


def make_meter(model: str, **kw: Any) -> MeterSim:
    if model == "water":
        return WaterMeterSim("M1", **kw)
    if model == "sdm630":  # spelled out: "model in (...)" does not narrow a str for mypy
        return EnergyMeterSim("M1", model="sdm630", **kw)
    assert model == "dtsu666"
    return EnergyMeterSim("M1", model="dtsu666", **kw)


def site(*devices: str) -> str:
    return "site: {id: t, name: t, gateway_id: g}\ndevices:\n" + "".join(
        f"  - {d}\n" for d in devices)


def tcp_entry(dev_id: str, port: int, profile: str, *, unit: int = 1,
              poll: str = "50ms", timeout: str = "300ms") -> str:
    return (f"{{id: {dev_id}, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: {unit}, "
            f"profile: {profile}, poll_interval: {poll}, timeout: {timeout}, max_backoff: 1s}}")


def one_link(text: str) -> ModbusLink:
    links = build_modbus_links(load_config_text(text).devices, SystemClock())
    assert len(links) == 1
    return links[0]


def profile_points(profile: str) -> list[ModbusPoint]:
    """The profile's points exactly as the gateway loads them."""
    config = load_config_text(site(tcp_entry("X", 502, profile)))
    device = config.devices[0]
    assert isinstance(device, ModbusTcpDevice)
    return device.points


@asynccontextmanager
async def served(meter: MeterSim,
                 text_for_port: Callable[[int], str]) -> AsyncIterator[tuple[Collector, int]]:
    """Serve ``meter`` on a free port and run the link built by ``text_for_port(port)``."""
    port = free_port()
    link = one_link(text_for_port(port))
    sink = Collector()
    async with SimModbusServer([meter.unit], port=port), running(link, sink):
        yield sink, port


def good_value(sink: Collector, point: str, device: str = "M1") -> float | None:
    r = sink.latest(device, point)
    if r is None or not r.good or not isinstance(r.value, int | float):
        return None
    return float(r.value)


def assert_decodes_to_snapshot(sink: Collector, device: str, meter: MeterSim) -> None:
    values = meter.snapshot()["values"]
    assert values, "the snapshot has values"
    for name, expected in values.items():
        reading = sink.latest(device, name)
        assert reading is not None, f"{device}.{name} never arrived"
        assert reading.good, reading
        assert reading.value == pytest.approx(expected, rel=F32, abs=1e-9), name


# -- the maps written down twice agree


@pytest.mark.parametrize("model", sorted(REGISTER_MAPS))
def test_profile_yaml_and_register_map_agree(model: str) -> None:
    reg_map: RegisterMap = REGISTER_MAPS[model]
    raw = yaml.safe_load((PROFILES / f"{reg_map.profile}.yaml").read_text(encoding="utf-8"))
    assert raw["driver"] == "modbus"
    assert raw["kind"] == make_meter(model).kind
    assert "docs/facility-rules.md#" in raw["source"]
    points = {p.name: p for p in profile_points(reg_map.profile)}
    assert list(points) == list(reg_map.registers), "same points in the same order"
    for name, reg in reg_map.registers.items():
        p = points[name]
        assert (p.address, p.function, p.type, p.scale, p.offset) == (
            reg.address, reg.table, reg.type, reg.scale, 0), name
        assert (p.word_order, p.byte_order, p.width) == ("big", "big", reg.width), name
        assert (p.unit or "") == reg.unit, name


def test_energy_profiles_share_point_names_so_one_rule_fits_both() -> None:
    sdm = {p.name for p in profile_points("eastron-sdm630")}
    dtsu = {p.name for p in profile_points("chint-dtsu666")}
    common = {*(f"{q}_l{i}" for q in ("voltage", "current", "power") for i in (1, 2, 3)),
              "power_total", "power_factor", "frequency", "import_kwh"}
    assert sdm & dtsu == common
    units = {p.name: p.unit for p in profile_points("eastron-sdm630")}
    assert all(units[n] == p.unit for p in profile_points("chint-dtsu666") if (n := p.name))


def test_dtsu666_profile_decodes_openems_test_vectors() -> None:
    """Registers from OpenEMS's MeterChintDtsu666ImplTest, decoded by the shipped profile."""
    vectors = {  # point: (registers, OpenEMS channel value in its unit → ours)
        "voltage_l1": ([0x4510, 0x5000], 230.9),      # 230900 mV
        "current_l1": ([0x45A4, 0x1000], 5.25),       # 5250 mA
        "power_total": ([0x46DE, 0xA800], 2850.0),    # 2850 W
        "power_l1": ([0x4623, 0xC000], 1048.0),       # 1048 W
        "power_factor": ([0x4466, 0x0000], 0.920),    # 920 = 0.920
        "frequency": ([0x459C, 0x4C00], 50.015),      # 50015 mHz
        "import_kwh": ([0x45B1, 0x71DF], 5678.234),   # 5678234 Wh
    }
    points = {p.name: p for p in profile_points("chint-dtsu666")}
    for name, (registers, expected) in vectors.items():
        assert decode_point(points[name], registers, device="M") == pytest.approx(
            expected, abs=1e-3), name
    # And the simulator's own encoder puts the same words on the wire for those values.
    assert DTSU666_MAP.registers["voltage_l1"].raw(230.9) == [0x4510, 0x5000]
    assert DTSU666_MAP.registers["power_factor"].raw(0.92) == [0x4466, 0x0000]


# -- every point of every shipped profile through the gateway


@pytest.mark.parametrize("model", sorted(REGISTER_MAPS))
async def test_every_profile_point_decodes_to_the_simulated_value(model: str) -> None:
    # Not ticking: the values (noise included) stay as they are while the gateway reads them.
    meter = make_meter(model, unit_id=3, seed=11, time_of_day=EVENING)
    profile = meter.register_map.profile
    async with served(meter, lambda port: site(tcp_entry("M1", port, profile, unit=3,
                                                         poll="60s"))) as (sink, _):
        names = list(meter.register_map.registers)
        await sink.wait_for(lambda: sink.latest_all("M1", names, Quality.GOOD))
    assert_decodes_to_snapshot(sink, "M1", meter)
    table_fc = {"input": 4, "holding": 3}
    fcs = {table_fc[r.table] for r in meter.register_map.registers.values()}
    assert set(meter.unit.requests) == fcs


async def test_dtsu666_answers_the_same_map_on_function_code_3() -> None:
    meter = EnergyMeterSim("M1", model="dtsu666", seed=5, time_of_day=EVENING)
    port = free_port()
    config = load_config_text(site(tcp_entry("M1", port, "chint-dtsu666", poll="60s")))
    device = config.devices[0]
    assert isinstance(device, ModbusTcpDevice)
    holding = device.model_copy(update={"points": [
        p.model_copy(update={"function": "holding"}) for p in device.points]})
    link = ModbusLink([holding], SystemClock())
    sink = Collector()
    async with SimModbusServer([meter.unit], port=port), running(link, sink):
        names = list(meter.register_map.registers)
        await sink.wait_for(lambda: sink.latest_all("M1", names, Quality.GOOD))
    assert_decodes_to_snapshot(sink, "M1", meter)
    assert dict(meter.unit.requests) == {3: 4}


# -- faults show up in the gateway as the right quality


async def wait_quality(sink: Collector, quality: Quality, point: str = "voltage_l1") -> None:
    await sink.wait_for(lambda: (r := sink.latest("M1", point)) is not None
                        and r.quality is quality)


@pytest.mark.parametrize(("action", "params", "quality", "error"), [
    ("silent", {}, Quality.COMM_LOSS, "no answer within 0.3s"),
    ("slow", {"seconds": 1.0}, Quality.COMM_LOSS, "no answer within 0.3s"),
    ("exception", {"code": 4}, Quality.BAD, "exception code 4 (server device failure)"),
    ("exception", {"code": 6}, Quality.BAD, "exception code 6 (server device busy)"),
    # A Modbus TCP gateway whose meter is silent says so with code 11: that is a comm loss.
    ("exception", {"code": 11}, Quality.COMM_LOSS, "exception code 11"),
    # A damaged frame is dropped by the framer, like line noise: the request goes unanswered.
    ("corrupt", {}, Quality.COMM_LOSS, "no answer within 0.3s"),
])
async def test_wire_faults_reach_the_gateway_and_it_recovers(
        action: str, params: dict[str, Any], quality: Quality, error: str) -> None:
    meter = EnergyMeterSim("M1", model="sdm630", seed=2, time_of_day=EVENING)
    async with served(meter, lambda port: site(tcp_entry("M1", port, "eastron-sdm630"))) \
            as (sink, _):
        await wait_quality(sink, Quality.GOOD)
        meter.apply(action, params)
        await wait_quality(sink, quality)
        bad = sink.latest("M1", "voltage_l1")
        assert bad is not None and bad.value is None
        assert bad.error is not None and error in bad.error, bad
        assert meter.apply("clear_faults", {}) == "M1: faults cleared"
        await wait_quality(sink, Quality.GOOD)
        names = list(meter.register_map.registers)
        await sink.wait_for(lambda: sink.latest_all("M1", names, Quality.GOOD))
    assert_decodes_to_snapshot(sink, "M1", meter)


async def test_out_of_range_values_are_good_readings_but_nan_is_bad() -> None:
    """The driver passes any finite number on (judging it is the rules' job) but rejects NaN."""
    meter = EnergyMeterSim("M1", model="dtsu666", seed=2, time_of_day=EVENING)
    async with served(meter, lambda port: site(tcp_entry("M1", port, "chint-dtsu666"))) \
            as (sink, _):
        await wait_quality(sink, Quality.GOOD)
        meter.apply("out_of_range", {"point": "voltage_l1", "value": 9999})
        await sink.wait_for(lambda: good_value(sink, "voltage_l1") == pytest.approx(9999))
        assert meter.snapshot()["faults"]["out_of_range"] == {"voltage_l1": 9999.0}
        meter.apply("out_of_range", {"point": "frequency", "value": "nan"})
        await wait_quality(sink, Quality.BAD, "frequency")
        bad = sink.latest("M1", "frequency")
        assert bad is not None and bad.error is not None and "nan" in bad.error
        # Only that point: the rest of its read block is still good.
        assert good_value(sink, "import_kwh") is not None
        meter.apply("clear_faults", {})
        await sink.wait_for(lambda: (v := good_value(sink, "voltage_l1")) is not None
                            and v < 300 and good_value(sink, "frequency") is not None)


# -- injected conditions change the decoded values


@pytest.mark.parametrize("model", ["sdm630", "dtsu666"])
async def test_electrical_injections_change_the_decoded_values(model: EnergyModel) -> None:
    meter = EnergyMeterSim("M1", model=model, seed=4, time_of_day=EVENING, rated_current=40)
    profile = meter.register_map.profile
    async with served(meter, lambda port: site(tcp_entry("M1", port, profile))) as (sink, _):
        await wait_quality(sink, Quality.GOOD)
        nominal = good_value(sink, "voltage_l2")
        assert nominal is not None and 215 < nominal < 240

        meter.apply("voltage_sag", {"phase": "l2", "to": 180})
        await sink.wait_for(lambda: (v := good_value(sink, "voltage_l2")) is not None
                            and abs(v - 180) < 2)
        meter.apply("phase_loss", {"phase": "c"})
        await sink.wait_for(lambda: good_value(sink, "voltage_l3") == 0.0
                            and good_value(sink, "current_l3") == 0.0)
        meter.apply("overload", {"phase": "l1", "percent": 130})
        await sink.wait_for(lambda: (i := good_value(sink, "current_l1")) is not None
                            and i > 40)
        v1 = good_value(sink, "voltage_l1")
        assert v1 is not None and 215 < v1 < 240, "the other phases are untouched"

        meter.apply("restore", {})
        await sink.wait_for(lambda: all((v := good_value(sink, f"voltage_l{i}")) is not None
                                        and 215 < v < 240 for i in (1, 2, 3))
                            and (good_value(sink, "current_l1") or 99) < 40)
        meter.apply("power_loss", {})
        await sink.wait_for(lambda: all(good_value(sink, f"voltage_l{i}") == 0.0
                                        for i in (1, 2, 3))
                            and good_value(sink, "frequency") == 0.0)


async def test_continuous_flow_shows_at_night_through_the_gateway() -> None:
    meter = WaterMeterSim("M1", seed=3, time_of_day=NIGHT)
    async with served(meter, lambda port: site(tcp_entry("M1", port, "water-meter-modbus"))) \
            as (sink, _):
        await sink.wait_for(lambda: good_value(sink, "flow_rate") == 0.0)
        meter.apply("continuous_flow", {"l_h": 45})
        await sink.wait_for(lambda: good_value(sink, "flow_rate") == pytest.approx(0.045))
        total = good_value(sink, "total_volume")
        assert total == pytest.approx(meter.snapshot()["values"]["total_volume"])
        meter.apply("restore", {})
        await sink.wait_for(lambda: good_value(sink, "flow_rate") == 0.0)


# -- many meters behind one Modbus TCP gateway


async def test_meter_bus_serves_many_units_through_one_link() -> None:
    port = free_port()
    bus = MeterBus.build(9, model=["sdm630", "dtsu666", "water"], first_unit=10, seed=1,
                         time_of_day=EVENING, port=port, tick=0.02)
    assert bus.where == f"127.0.0.1:{port}"
    text = site(*(tcp_entry(m.name, port, m.register_map.profile, unit=m.unit.unit_id,
                            poll="60s") for m in bus.meters))
    link = one_link(text)
    assert link.device_ids == [f"M0{i}" for i in range(1, 10)]
    sink = Collector()
    async with bus, running(link, sink):
        await sink.wait_for(lambda: all(
            sink.latest_all(m.name, list(m.register_map.registers), Quality.GOOD)
            for m in bus.meters))
        for m in bus.meters:
            assert_decodes_to_snapshot(sink, m.name, m)
        # Ticking moves every meter on; the 5 000x day makes the energy visibly grow.
        meter = bus.meter("M01")
        meter.clock.set(EVENING, acceleration=5000)
        before = meter.snapshot()["values"]["import_kwh"]
        ticking = asyncio.create_task(bus.run(), name="meter-bus.run")
        try:
            async with asyncio.timeout(2):
                while meter.snapshot()["values"]["import_kwh"] < before + 1:
                    await asyncio.sleep(0.02)
        finally:
            ticking.cancel()
            await asyncio.wait({ticking})
    assert {m.kind for m in bus.meters} == {"energy_meter", "water_meter"}


def test_meter_bus_rejects_impossible_buses() -> None:
    with pytest.raises(ValueError, match=r"1\.\.247"):
        MeterBus.build(3, first_unit=246, serial_port="/dev/null")
    with pytest.raises(ValueError, match="unique"):
        MeterBus([EnergyMeterSim("A", unit_id=1), WaterMeterSim("A", unit_id=2)], port=5020)
    with pytest.raises(ValueError, match="unit ids must be unique"):
        MeterBus([EnergyMeterSim("A", unit_id=1), WaterMeterSim("B", unit_id=1)], port=5020)
    with pytest.raises(ValueError, match="unknown meter model"):
        # An unknown model on purpose: build() must refuse it at run time.
        MeterBus.build(2, model=["sdm630", "gas"], port=5020)  # type: ignore[list-item]
    with pytest.raises(KeyError):
        MeterBus.build(2, port=5020).meter("nope")


# -- the models themselves (no network)


def test_daily_curves_have_night_lows_and_peaks() -> None:
    night, morning, noon, evening = (load_fraction(h) for h in (3, 7.75, 13, 19.5))
    assert night < 0.15 < noon < morning < evening < 0.8
    assert all(water_demand(h) == 0.0 for h in (23.5, 0, 2.5, 5.49))
    assert all(water_demand(h) > 0.05 for h in (6, 7.5, 12, 19.5, 23))


def test_the_day_clock_can_be_set_accelerated_and_wraps() -> None:
    clock = DayClock(time_of_day=23 * 3600, acceleration=1440)  # a day per minute
    assert str(clock) == "23:00:00"
    assert clock.advance(5) == 7200
    assert str(clock) == "01:00:00"
    wall = DayClock()
    assert 0 <= wall.hour < 24
    with pytest.raises(ValueError, match="acceleration"):
        DayClock(acceleration=0)


def test_energy_accumulates_from_power_at_the_simulated_rate() -> None:
    meter = EnergyMeterSim("M", time_of_day=EVENING, noise=0, acceleration=3600,
                           initial_kwh=100)
    power_w = meter.snapshot()["values"]["power_total"]
    meter.step(1.0)  # one simulated hour
    after = meter.snapshot()
    assert after["time_of_day"] == "20:30:00"
    assert after["values"]["import_kwh"] == pytest.approx(100 + power_w / 1000)
    assert after["values"]["total_kwh"] == after["values"]["import_kwh"]


def test_water_total_counts_litres_and_stops_at_night() -> None:
    meter = WaterMeterSim("W", time_of_day=7.5 * 3600, noise=0, acceleration=60,
                          initial_m3=10)
    flow = meter.snapshot()["values"]["flow_rate"]
    assert flow == pytest.approx(3.0 * water_demand(7.5))
    meter.step(60)  # one simulated hour at that flow
    assert meter.snapshot()["values"]["total_volume"] == pytest.approx(
        10 + math.floor(flow * 1000) / 1000)
    meter.apply("set_time", {"at": "02:00"})
    meter.step(60)
    values = meter.snapshot()["values"]
    assert values["flow_rate"] == 0.0
    meter.step(60)
    assert meter.snapshot()["values"]["total_volume"] == values["total_volume"]


def test_seeds_make_runs_repeat() -> None:
    a, b, c = (EnergyMeterSim("M", seed=s, time_of_day=EVENING) for s in (1, 1, 2))
    for m in (a, b, c):
        m.step(0.5)
    assert a.snapshot()["values"] == b.snapshot()["values"] != c.snapshot()["values"]
    assert dict(a.unit.input) == dict(b.unit.input)


def test_night_consumption_adds_load_only_at_night() -> None:
    meter = EnergyMeterSim("M", time_of_day=NIGHT, noise=0)
    base = meter.snapshot()["values"]["power_total"]
    meter.apply("night_consumption", {"kw": 3})
    assert meter.snapshot()["values"]["power_total"] == pytest.approx(base + 3000)
    meter.apply("set_time", {"at": "12:00"})
    noon = EnergyMeterSim("N", time_of_day=12 * 3600, noise=0)
    assert meter.snapshot()["values"]["power_total"] == pytest.approx(
        noon.snapshot()["values"]["power_total"])


def test_a_sag_with_a_duration_ends_by_itself() -> None:
    meter = EnergyMeterSim("M", time_of_day=EVENING, noise=0)
    meter.apply("voltage_sag", {"phase": "all", "percent": 70, "duration": 2})
    assert meter.snapshot()["values"]["voltage_l3"] == pytest.approx(161)
    assert meter.snapshot()["conditions"] == [f"voltage_sag L{i} 161" for i in (1, 2, 3)]
    meter.step(1.5)
    assert meter.snapshot()["values"]["voltage_l1"] == pytest.approx(161)
    meter.step(1.0)
    assert meter.snapshot()["values"]["voltage_l1"] > 220
    assert meter.snapshot()["conditions"] == []


def test_power_loss_silent_makes_the_unit_silent_until_restore() -> None:
    meter = EnergyMeterSim("M", time_of_day=EVENING)
    assert "silent" in meter.apply("power_loss", {"mode": "silent"})
    assert meter.unit.faults.silent
    assert meter.snapshot()["values"]["frequency"] == 0.0
    meter.apply("restore", {})
    assert not meter.unit.faults.silent
    assert meter.snapshot()["values"]["frequency"] > 49


def test_every_listed_action_is_accepted_and_faults_reach_the_unit() -> None:
    needs = {"phase_loss": {"phase": "l1"}, "set_time": {"at": "06:30:15"}}
    for meter in (EnergyMeterSim("E", model="dtsu666"), WaterMeterSim("W")):
        names = [a.name for a in meter.actions()]
        assert len(names) == len(set(names))
        for action in meter.actions():
            assert action.help
            message = meter.apply(action.name, needs.get(action.name, {}))
            assert message.startswith(f"{meter.name}: ")
        faults = meter.unit.faults
        meter.apply("slow", {"seconds": 0.7})
        meter.apply("exception", {"code": 2})
        meter.apply("silent", {})
        meter.apply("corrupt", {})
        assert (faults.delay, faults.exception, faults.silent, faults.corrupt) == (
            0.7, 2, True, True)
        meter.apply("clear_faults", {})
        assert (faults.delay, faults.exception, faults.silent, faults.corrupt) == (
            0.0, None, False, False)
    assert {"voltage_sag", "phase_loss", "power_loss", "overload", "night_consumption",
            "restore", "silent", "slow", "exception", "corrupt", "out_of_range",
            "clear_faults"} <= {a.name for a in EnergyMeterSim("E").actions()}
    assert "continuous_flow" in {a.name for a in WaterMeterSim("W").actions()}


@pytest.mark.parametrize(("action", "params", "message"), [
    ("explode", {}, "unknown action 'explode'"),
    ("voltage_sag", {"percnt": 50}, "unknown parameter(s) percnt"),
    ("voltage_sag", {"to": 180, "percent": 50}, "either 'to' (volts) or 'percent'"),
    ("voltage_sag", {"phase": "l4"}, "phase must be one of"),
    ("phase_loss", {}, "phase must be one of"),
    ("phase_loss", {"phase": "all"}, "phase must be one of"),
    ("overload", {"percent": "lots"}, "percent must be a number"),
    ("overload", {"percent": -5}, "percent must be within 0..1000"),
    ("overload", {"duration": -1}, "duration must be >= 0, got -1"),
    ("power_loss", {"mode": "dark"}, "mode must be 'zero' or 'silent'"),
    ("exception", {"code": 2.5}, "whole number"),
    ("out_of_range", {"point": "voltage_l9"}, "point must be one of"),
    ("out_of_range", {"value": "huge"}, "value must be a number"),
    ("out_of_range", {"value": 1e39}, "float too large"),
    ("set_time", {"at": "25:00"}, "HH:MM[:SS]"),
])
def test_bad_actions_say_what_is_wrong(action: str, params: dict[str, Any],
                                       message: str) -> None:
    meter = EnergyMeterSim("M9", time_of_day=EVENING, noise=0)
    before = meter.snapshot()
    with pytest.raises(ActionError) as info:
        meter.apply(action, params)
    assert str(info.value).startswith("M9: ")
    assert message in str(info.value)
    assert meter.snapshot() == before, "a rejected action changes nothing"


def test_a_uint32_total_cannot_show_nan() -> None:
    with pytest.raises(ActionError, match="does not fit a uint32"):
        WaterMeterSim("W").apply("out_of_range", {"point": "total_volume", "value": "nan"})
    meter = WaterMeterSim("W", time_of_day=NIGHT)
    meter.apply("out_of_range", {"point": "total_volume", "value": 4_000_000})
    assert meter.unit.registers("holding", 2, 2) == [0xEE6B, 0x2800]  # 4e9 litres


async def test_a_slow_meter_does_not_outlive_its_server() -> None:
    """A request held by ``slow`` is cancelled when the server stops (the leak check sees it)."""
    meter = EnergyMeterSim("M1", model="sdm630", time_of_day=EVENING)
    meter.apply("slow", {"seconds": 30})
    async with served(meter, lambda port: site(tcp_entry("M1", port, "eastron-sdm630"))) \
            as (sink, _):
        await wait_quality(sink, Quality.COMM_LOSS)
