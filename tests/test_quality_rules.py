"""``quality:`` conditions: a rule on a point's data quality (bad, comm-loss, stale, uncertain).

Units first (the config model and its check-config errors, the compiled leaf on hand-made
contexts), then the real thing: a real pymodbus server serving an Eastron SDM630 register image
(simulators/) whose voltage block starts answering a Modbus exception, the real gateway with
the energy pack and a data-quality rule, on the fake clock. The bad block must raise the
data-quality order and nothing else: a bad value never passes for a voltage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.alarms._conditions import Context, compile_condition
from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import QualityCondition, load_config_text
from gateway.errors import ConfigError
from gateway.model import Quality, Reading
from simulators.meter_maps import SDM630_MAP
from simulators.meters import EnergyMeterSim
from simulators.modbus_server import SimModbusServer
from tests.gateway_support import running_gateway
from tests.support import free_port
from tests.test_check_config import propgw

BASE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
devices:
  - {id: M1, name: 配电房总表, driver: modbus-tcp, host: 127.0.0.1, profile: eastron-sdm630}
rules:
  - {id: q, devices: [M1], category: data_quality, priority: P3, message: {zh: 数据, en: data},
     when: WHEN}
"""


def rule_with(when: str) -> str:
    return BASE.replace("WHEN", when)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(("when", "qualities"), [
    ("{quality: bad, point: voltage_l1}", {"bad"}),
    ("{quality: [bad, comm-loss], point: voltage_l1}", {"bad", "comm-loss"}),
    ("{quality: stale, point: voltage_l1, after: 10m}", {"stale"}),
    ("{quality: uncertain}", {"uncertain"}),
    ("{not: {quality: good, point: frequency}}", None),
])
def test_quality_conditions_load(when: str, qualities: set[str] | None) -> None:
    config = load_config_text(rule_with(when))
    cond = config.rules[0].when
    if qualities is not None:
        assert isinstance(cond, QualityCondition) and cond.qualities() == qualities


@pytest.mark.parametrize(("when", "where", "message"), [
    ("{quality: fuzzy, point: voltage_l1}", "rules[0].when.quality[0]",
     "input should be 'good', 'bad', 'comm-loss', 'stale' or 'uncertain'"),
    ("{all: [{point: frequency, gt: 1}, {quality: stale, point: voltage_l1}]}",
     "rules[0].when.all[1]", "quality: stale needs after: DURATION"),
    ("{quality: bad, point: voltage_l1, after: 5m}", "rules[0].when",
     "after goes with quality: stale"),
    ("{quality: [], point: voltage_l1}", "rules[0].when", "quality needs at least one of"),
    ("{quality: bad, point: voltage_l9}", "rules[0].when",
     "device 'M1' has no point(s) voltage_l9"),
    ("{quality: bad, point: voltage_l1, eq: 1}", "rules[0].when.eq",
     "unknown key 'eq'. Expected one of: after, point, quality"),
])
def test_a_quality_mistake_names_its_key(when: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(rule_with(when))
    text = str(err.value)
    assert where in text and message in text, text


def test_check_config_exits_2_with_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(rule_with("{any: [{quality: stale, point: voltage_l1}]}"), encoding="utf-8")
    done = propgw("check-config", str(path))
    assert done.returncode == 2, done
    assert "rules[0].when.any[0]" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    path.write_text(rule_with("{quality: [bad, stale], point: voltage_l1, after: 5m}"),
                    encoding="utf-8")
    done = propgw("check-config", "-v", str(path))
    assert done.returncode == 0, done
    assert "voltage_l1 quality is bad or stale (no good reading for 5m)" in done.stdout


# --------------------------------------------------------------------------- the leaf


def context(readings: dict[str, Quality | None], *, mono: float = 100.0,
            last_good: dict[str, float] | None = None) -> Context:
    values = {p: Reading("M1", p, 230.0 if q is Quality.GOOD else None, q, 0.0)
              for p, q in readings.items() if q is not None}
    return Context(values=values, last_good=last_good or dict.fromkeys(readings, 0.0),
                   mono=mono, wall=0.0, tz=dt.UTC)


def judge(when: str, ctx: Context) -> bool | None:
    config = load_config_text(rule_with(when))
    return compile_condition(config.rules[0].when).evaluate(ctx)


@pytest.mark.parametrize(("when", "quality", "expected"), [
    ("{quality: bad, point: voltage_l1}", Quality.BAD, True),
    ("{quality: bad, point: voltage_l1}", Quality.GOOD, False),
    ("{quality: bad, point: voltage_l1}", Quality.COMM_LOSS, False),
    ("{quality: bad, point: voltage_l1}", None, False),
    ("{quality: comm-loss, point: voltage_l1}", Quality.COMM_LOSS, True),
    ("{quality: [bad, comm-loss], point: voltage_l1}", Quality.COMM_LOSS, True),
    ("{quality: uncertain, point: voltage_l1}", Quality.BAD, True),
    ("{quality: uncertain, point: voltage_l1}", None, True),
    ("{quality: uncertain, point: voltage_l1}", Quality.GOOD, False),
    ("{quality: good, point: voltage_l1}", Quality.GOOD, True),
    ("{quality: good, point: voltage_l1}", Quality.BAD, False),
])
def test_the_leaf_is_never_unknown(when: str, quality: Quality | None, expected: bool) -> None:
    assert judge(when, context({"voltage_l1": quality, "frequency": Quality.GOOD})) is expected


def test_stale_counts_from_the_last_good_reading_and_device_wide_means_any_point() -> None:
    stale = "{quality: stale, point: voltage_l1, after: 60s}"
    assert judge(stale, context({"voltage_l1": Quality.GOOD}, mono=59.0)) is False
    assert judge(stale, context({"voltage_l1": Quality.GOOD}, mono=60.0)) is True
    assert judge(stale, context({"voltage_l1": Quality.GOOD}, mono=60.0,
                                last_good={"voltage_l1": 30.0})) is False
    # Any point of the device; one never read is not "uncertain" for that alone.
    anywhere = "{quality: [bad, uncertain]}"
    assert judge(anywhere, context({"voltage_l1": Quality.GOOD, "frequency": None})) is False
    assert judge(anywhere, context({"voltage_l1": Quality.GOOD,
                                    "frequency": Quality.BAD})) is True


def test_a_comparison_on_the_bad_point_stays_unknown() -> None:
    ctx = context({"voltage_l1": Quality.BAD})
    assert judge("{point: voltage_l1, lt: 110}", ctx) is None
    assert judge("{all: [{quality: bad, point: voltage_l1}, {point: voltage_l1, lt: 110}]}",
                 ctx) is None, "a quality leaf does not make the value known"


# --------------------------------------------------------------------------- a real gateway


SITE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
devices:
  - {{id: M1, name: 配电房总表, driver: modbus-tcp, host: 127.0.0.1, port: {port}, unit: 1,
     profile: eastron-sdm630, poll_interval: 10s, timeout: 1s,
     location: {{building: 配电房, zone: feeder-main}}}}
detectors: [energy]
rules:
  - id: meter-data-quality
    kind: energy_meter
    when: {{quality: bad, point: voltage_l1}}
    for: 5m
    category: data_quality
    priority: P3
    message:
      zh: "{{device_name}}（{{location}}）电压数据无效（Modbus 异常应答），请检修电表"
      en: "{{device_name}} ({{location}}): voltage data invalid (Modbus exception answer)"
"""
#: The energy pack's orders a bad voltage block must not raise.
THRESHOLD_CATEGORIES = {"voltage_out_of_band", "phase_loss", "power_loss", "overload"}


@asynccontextmanager
async def gateway_running(tmp_path: Path, port: int, clock: FakeClock
                          ) -> AsyncIterator[Gateway]:
    gateway = Gateway(load_config_text(SITE.format(state=tmp_path / "state", port=port)),
                      clock=clock)
    async with running_gateway(gateway):
        yield gateway


async def polled(gateway: Gateway, clock: FakeClock, quality: str) -> dict[str, str]:
    """Until this instant's poll is in (and judged by the rules); each point's quality."""
    async with asyncio.timeout(10):
        while True:
            device = gateway.readings.snapshot("M1")["devices"].get("M1")
            last = device["last"] if device is not None else {}
            volt = last.get("voltage_l1")
            if volt is not None and volt["received_ts"] == clock.time() and (
                    volt["quality"] == quality):
                break
            await asyncio.sleep(0.005)
        for feed in gateway.bus.subscriptions:
            if feed.name == "alarms":
                await feed.queue.join()
        await clock.advance(0)
    return {name: r["quality"] for name, r in last.items()}


async def run_for(gateway: Gateway, clock: FakeClock, seconds: int, quality: str) -> None:
    for _ in range(seconds // 10):
        await clock.advance(10)
        await polled(gateway, clock, quality)


async def test_a_quality_rule_raises_a_data_quality_order_on_an_exception_block(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    meter = EnergyMeterSim("M1", noise=0, time_of_day=12 * 3600.0)
    port = free_port()
    voltages = [SDM630_MAP.registers[f"voltage_l{n}"] for n in (1, 2, 3)]
    async with SimModbusServer([meter.unit], port=port), \
            gateway_running(tmp_path, port, fake_clock) as gateway:
        qualities = await polled(gateway, fake_clock, "good")
        assert set(qualities.values()) == {"good"}
        # The voltage block answers "device failure" from now on; the energy registers do not.
        meter.unit.faults.exception_blocks = {
            (r.address, r.address + 1): 4 for r in voltages}
        await fake_clock.advance(10)
        qualities = await polled(gateway, fake_clock, "bad")
        assert {p: q for p, q in qualities.items() if q == "bad"}.keys() >= {
            "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "power_l1"}, \
            "the whole read with the voltages is bad"
        assert qualities["import_kwh"] == "good", "the rest of the meter still answers"

        await run_for(gateway, fake_clock, 280, "bad")
        assert gateway.desk.open_orders == [], "not before the rule's 5 minutes"
        await run_for(gateway, fake_clock, 30, "bad")
        orders = gateway.desk.open_orders
        assert [(o.rule_id, o.category, o.priority, o.title.zh) for o in orders] == [
            ("meter-data-quality", "data_quality", "P3", "数据质量：配电房总表")], \
            "one data-quality order, and no voltage, phase, power or overload order"
        assert orders[0].description.zh.startswith("配电房总表（配电房 feeder-main")
        assert {a.alarm_id for a in gateway.engine.active()} == {"meter-data-quality@M1"}
        assert not THRESHOLD_CATEGORIES & {a.category for a in gateway.engine.active()}

        # Repaired: good readings again, and the data-quality alarm clears.
        meter.unit.faults.clear()
        await run_for(gateway, fake_clock, 20, "good")
        order = gateway.desk.get(orders[0].id)
        assert order is not None and (order.event, order.alarm_active) == (
            "alarm_cleared", False)
        assert not any(o.category in THRESHOLD_CATEGORIES for o in gateway.desk.open_orders)
