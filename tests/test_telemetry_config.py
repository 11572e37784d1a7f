"""The ``telemetry:`` section: defaults, selection, overrides, and errors a person can act on;
``check-config`` says what telemetry will send."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from gateway.check_cli import print_summary
from gateway.config import GatewayConfig, load_config_text
from gateway.errors import ConfigError
from gateway.telemetry import Selection

BASE = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
brokers: {{platform: {{host: 127.0.0.1, port: 1883}}}}
{upstream}
{telemetry}
devices:
  - id: M1
    kind: energy_meter
    driver: modbus-tcp
    host: 127.0.0.1
    points:
      - {{name: power, address: 0, type: float32, unit: kW}}
      - {{name: energy, address: 2, type: float32, unit: kWh}}
      - {{name: energy_raw, address: 4, type: uint32}}
    derived:
      - {{name: running, expr: "power > 0.1"}}
  - id: E1
    kind: elevator
    driver: modbus-tcp
    host: 127.0.0.1
    points: [{{name: floor, address: 0, type: int16}}]
  - id: "door-{{door}}"
    kind: access_door
    driver: mqtt
    broker: platform
    points: [{{name: state, topic: "acs/{{door}}/state"}}]
"""
UPSTREAM = "upstream: {broker: platform, topic_prefix: pm}"
REPO = Path(__file__).resolve().parents[1]


def load(telemetry: str, upstream: str = UPSTREAM) -> GatewayConfig:
    return load_config_text(BASE.format(upstream=upstream, telemetry=telemetry),
                            source="site.yaml")


def errors_of(telemetry: str, upstream: str = UPSTREAM) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(telemetry, upstream)
    return [str(p) for p in info.value.problems]


def test_off_unless_the_section_is_given() -> None:
    assert load("").telemetry is None


def test_defaults_when_on() -> None:
    tele = load("telemetry: {}").telemetry
    assert tele is not None
    assert tele.enabled
    d = tele.defaults
    assert (d.deadband, d.deadband_percent, d.min_interval, d.max_interval) == \
        (0.0, 0.5, 10.0, 900.0)
    assert (tele.flush_every, tele.max_points_per_message) == (1.0, 200)
    selection = Selection(tele, load("telemetry: {}").devices)
    for device, point in (("M1", "power"), ("M1", "running"), ("E1", "floor"),
                          ("door-D7", "state")):
        assert selection.spec(device, point) is not None, f"{device}.{point} is selected"
    assert selection.spec("M1", "nope") is None
    assert selection.spec("X9", "floor") is None


def test_include_exclude_and_overrides_key_by_key() -> None:
    config = load("""
telemetry:
  include: [{kinds: [energy_meter]}, {devices: ["door-{door}"]}]
  exclude: [{points: ["*_raw"]}]
  defaults: {min_interval: 5s}
  overrides:
    - {kinds: [energy_meter], deadband_percent: 0, max_interval: 1h}
    - {devices: [M1], points: [power], deadband: 2}
""")
    assert config.telemetry is not None
    selection = Selection(config.telemetry, config.devices)
    assert selection.spec("E1", "floor") is None, "elevators are not included"
    assert selection.spec("M1", "energy_raw") is None, "excluded"
    assert selection.spec("door-D1", "state") is not None, "a template selects its expansions"
    power = selection.spec("M1", "power")
    energy = selection.spec("M1", "energy")
    assert power is not None
    assert energy is not None
    assert (power.policy.deadband, power.policy.deadband_percent, power.policy.min_interval,
            power.policy.max_interval) == (2.0, 0.0, 5.0, 3600.0)
    assert (energy.policy.deadband, energy.policy.deadband_percent) == (0.0, 0.0)
    assert power.unit == "kW"


@pytest.mark.parametrize(("telemetry", "upstream", "expected"), [
    ("telemetry: {}", "", "telemetry (line 5): nowhere to send it: needs upstream.broker (MQTT) or "
                          "upstream.http.telemetry_url"),
    ("telemetry: {}", "upstream: {http: {url: 'https://p.example/wo'}}",
     "telemetry (line 5): nowhere to send it"),
    ("telemetry: {include: [{kinds: [elevators]}]}", UPSTREAM,
     "telemetry.include[0].kinds (line 5): no device has kind 'elevators' (kinds: access_door, "
     "elevator, energy_meter)"),
    ("telemetry: {exclude: [{devices: [E2]}]}", UPSTREAM,
     "telemetry.exclude[0].devices (line 5): unknown device 'E2' (a pattern needs *, ? or [...])"),
    ("telemetry: {defaults: {min_interval: 1h, max_interval: 10m}}", UPSTREAM,
     "telemetry.defaults (line 5): min_interval (3600s) must not be longer than max_interval (600s)"),
    ("telemetry: {overrides: [{kinds: [elevator], min_interval: 1h}]}", UPSTREAM,
     "telemetry.overrides[0] (line 5): min_interval (3600s) is longer than max_interval (900s)"),
    ("telemetry: {overrides: [{kinds: [elevator]}]}", UPSTREAM,
     "an override must set at least one of deadband"),
    ("telemetry: {defaults: {deadband_percent: -1}}", UPSTREAM,
     "telemetry.defaults.deadband_percent"),
    ("telemetry: {include: [{points: ['a b']}]}", UPSTREAM, "is not a valid pattern"),
    ("telemetry: {flush_every: 0}", UPSTREAM, "telemetry.flush_every"),
    ("telemetry: {deadband: 1}", UPSTREAM, "telemetry.deadband"),
])
def test_mistakes_are_named_with_their_key(telemetry: str, upstream: str,
                                           expected: str) -> None:
    problems = errors_of(telemetry, upstream)
    assert any(expected in p for p in problems), problems


def test_http_only_upstream_with_a_telemetry_url_is_enough() -> None:
    config = load("telemetry: {}",
                  "upstream: {http: {url: 'https://p.example/wo', "
                  "telemetry_url: 'https://p.example/telemetry'}}")
    assert config.upstream is not None
    assert config.upstream.http is not None
    assert config.upstream.http.telemetry_url == "https://p.example/telemetry"
    assert errors_of("", "upstream: {http: {url: 'https://p.example/wo', "
                         "telemetry_url: 'ftp://x'}}")


def test_a_disabled_section_is_not_checked_for_a_destination() -> None:
    assert load("telemetry: {enabled: false}", "").telemetry is not None


def test_check_config_says_what_telemetry_sends() -> None:
    out = io.StringIO()
    print_summary(load("telemetry: {exclude: [{points: ['*_raw']}]}"), out)
    assert ("telemetry: 5 of 6 point(s) by exception (deadband 0 or 0.5%, min 10s, heartbeat "
            "15m, 0 override(s)) to pm/s1/telemetry/<device>") in out.getvalue()
    out = io.StringIO()
    print_summary(load(""), out)
    assert "telemetry: off (no readings go upstream)" in out.getvalue()


def test_the_documented_example_loads() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = doc[doc.index("## telemetry\n"):doc.index("## A complete example")]
    [block] = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    config = load_config_text(DOC_SITE + block)
    assert config.telemetry is not None
    selection = Selection(config.telemetry, config.devices)
    energy = selection.spec("M1", "active_energy")
    power = selection.spec("M1", "active_power")
    car = selection.spec("B1-L1", "car_position")
    assert energy is not None
    assert power is not None
    assert car is not None
    assert energy.policy.deadband_percent == 0
    assert (power.policy.deadband, power.policy.deadband_percent) == (0.5, 2.0)
    assert car.policy.min_interval == 2
    assert selection.spec("door-D1", "state") is not None
    assert selection.spec("door-D1", "battery") is None
    assert selection.spec("M1", "energy_raw") is None


DOC_SITE = """
site: {id: s1, name: x, gateway_id: gw1}
brokers: {platform: {host: 127.0.0.1}}
upstream: {broker: platform}
devices:
  - {id: M1, kind: energy_meter, driver: modbus-tcp, host: 127.0.0.1,
     points: [{name: active_energy, address: 0, type: float32},
              {name: active_power, address: 2, type: float32},
              {name: energy_raw, address: 4, type: uint32}]}
  - {id: W1, kind: water_meter, driver: modbus-tcp, host: 127.0.0.2,
     points: [{name: volume, address: 0, type: float32}]}
  - {id: B1-L1, kind: elevator, driver: modbus-tcp, host: 127.0.0.3,
     points: [{name: car_position, address: 0, type: int16}]}
  - {id: "door-{door}", kind: access_door, driver: mqtt, broker: platform,
     points: [{name: state, topic: "acs/{door}/state"}, {name: battery, topic: "acs/{door}/bat"}]}
"""
