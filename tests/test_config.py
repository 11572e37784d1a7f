"""Config loading: every mistake at once, with key path, line, found and expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import (
    ModbusRtuDevice,
    ModbusTcpDevice,
    MqttDevice,
    load_config,
    load_config_text,
    parse_duration,
)
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

GOOD = """
site: {id: s1, name: 阳光花园, gateway_id: gw1}
brokers:
  local: {host: 127.0.0.1, port: 1883, username: gw, password: "${MQTT_PASSWORD}"}
devices:
  - id: E1
    driver: modbus-tcp
    host: 10.0.0.5
    unit: 3
    poll_interval: 500ms
    location: {building: 1, floor: 3}
    points:
      - {name: speed, address: 12, type: float32, word_order: little, unit: m/s}
      - {name: up_limit, address: 9, type: bit, bit: 0}
      - {name: running, address: 0, function: 1, type: bool}
  - id: M1
    driver: modbus-rtu
    port: /dev/ttyUSB0
    baudrate: 19200
    parity: E
    unit: 7
    points: [{name: v, address: 0, function: input, type: float32}]
  - id: "door-{door}"
    driver: mqtt
    kind: access_door
    stale_after: 2m
    points:
      - {name: contact, topic: "acs/{door}/state", path: status.contact, map: {OPEN: true, CLOSED: false}}
"""


def errors_of(text: str, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source="site.yaml", env=env)
    return [str(p) for p in info.value.problems]


def test_a_good_file_loads_with_types_and_defaults() -> None:
    config = load_config_text(GOOD, env={"MQTT_PASSWORD": "s3cret"})
    e1, m1, door = config.devices
    assert isinstance(e1, ModbusTcpDevice) and e1.port == 502 and e1.poll_interval == 0.5
    assert e1.location.building == "1" and e1.points[2].function == "coil"
    assert isinstance(m1, ModbusRtuDevice) and m1.serial_settings == (19200, "E", 8, 1)
    assert isinstance(door, MqttDevice) and door.stale_after == 120
    assert door.points[0].map == {"OPEN": True, "CLOSED": False}
    password = config.brokers["local"].password
    assert password is not None and password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_three_mistakes_are_reported_together_with_paths_and_lines() -> None:
    text = GOOD.replace("unit: 3", "unit: 300").replace(
        "type: float32, word_order", "type: float33, word_order").replace(
        "baudrate: 19200", "baudrate: 19200\n    parity_bits: 1")
    problems = errors_of(text, MQTT_PASSWORD="x")
    assert len(problems) == 3, problems
    assert problems[0].startswith("devices[0].unit (line 9): ")
    assert "less than or equal to 255" in problems[0] and "found: 300" in problems[0]
    assert problems[1].startswith("devices[0].points[0].type (line 13): ")
    assert "'float32'" in problems[1] and "found: 'float33'" in problems[1]
    assert problems[2].startswith("devices[1].parity_bits (line 20): unknown key 'parity_bits'")
    assert "did you mean 'parity'?" in problems[2]



@pytest.mark.parametrize(("when", "expected"), [
    ("{comm_loss: true, foo: 1}", "unknown key 'foo'. Expected one of: comm_loss, point"),
    ("{stale: 10s, pointt: kwh}",
     "unknown key 'pointt'; did you mean 'point'? Expected one of: point, stale"),
])
def test_a_mistyped_key_in_a_condition_lists_that_conditions_keys(when: str,
                                                                  expected: str) -> None:
    text = f"""
site: {{id: s1, name: s, gateway_id: g}}
devices:
  - {{id: M1, driver: modbus-tcp, host: 127.0.0.1, points: [{{name: kwh, address: 0}}]}}
rules:
  - {{id: r, devices: [M1], category: device_offline, priority: P2, message: {{zh: x, en: x}},
     when: {when}}}
"""
    (problem,) = errors_of(text)
    assert expected in problem, problem

def test_secrets_from_the_environment_are_never_echoed() -> None:
    text = GOOD.replace("port: 1883, username", "port: \"${MQTT_PORT}\", username")
    problems = errors_of(text, MQTT_PASSWORD="hunter2", MQTT_PORT="not-a-port")
    assert problems and all("hunter2" not in p for p in problems)
    assert any("brokers.local.port" in p and "found: ${MQTT_PORT}" in p for p in problems)


def test_missing_environment_variable_names_the_variable_and_key() -> None:
    problems = errors_of(GOOD)
    assert problems == ["brokers.local.password (line 4): environment variable MQTT_PASSWORD is "
                        "not set (set it, or write ${MQTT_PASSWORD:-default})"]


def test_yaml_syntax_error_gives_line_and_column() -> None:
    problems = errors_of("site: {id: s1\ndevices: [")
    assert len(problems) == 1 and problems[0].startswith("line ")
    assert "YAML syntax" in problems[0]


@pytest.mark.parametrize(("patch", "expected"), [
    (("gateway_id: gw1}", "gateway_id: gw1}\nupstream: {broker: cloud}"),
     "upstream.broker (line 3): 'cloud' is not in brokers (known: local)"),
    (("id: M1", "id: E1"), "devices[1].id (line 16): 'E1' is already used by devices[0]"),
    (("type: bit, bit: 0", "type: bit"), "type 'bit' needs 'bit: 0..15'"),
    (("function: 1, type: bool", "function: 1, type: uint16"),
     "a coil point holds one bit: type must be 'bool'"),
    (('id: "door-{door}"', 'id: "door-{gate}"'), "lacks placeholder(s) {gate}"),
    (("topic: \"acs/{door}/state\"", "topic: \"acs/x{door}/state\""),
     "a placeholder must be a whole topic level"),
    (("driver: modbus-rtu", "driver: bacnet"), "devices[1].driver (line 17): expected one of "
                                                "'modbus-tcp', 'modbus-rtu', 'mqtt' (found: 'bacnet')"),
    (("poll_interval: 500ms", "poll_interval: soon"), "expected a duration such as 30"),
])
def test_single_mistakes_are_explained(patch: tuple[str, str], expected: str) -> None:
    problems = errors_of(GOOD.replace(*patch), MQTT_PASSWORD="x")
    assert any(expected in p for p in problems), problems


def test_rules_must_reference_existing_devices_and_points() -> None:
    text = GOOD + """
rules:
  - id: r1
    devices: [E1, E9]
    when: {all: [{point: speed, gt: 3}, {point: nope, eq: 1}]}
    category: test
    priority: P1
    message: {zh: 测试, en: test}
  - id: r2
    kind: boiler
    when: {point: x, eq: 1}
    category: test
    priority: P5
    message: {zh: 测试, en: test}
"""
    problems = errors_of(text, MQTT_PASSWORD="x")
    assert any(p.startswith("rules[1].priority") for p in problems), problems
    text = text.replace("priority: P5", "priority: P2")
    problems = errors_of(text, MQTT_PASSWORD="x")
    assert "rules[0].devices (line 32): unknown device 'E9'" in problems
    assert "rules[0].when (line 33): device 'E1' has no point(s) nope (rule r1)" in problems
    assert any(p.startswith("rules[1].kind (line 38): no device has kind 'boiler'")
               for p in problems)


def test_rtu_devices_on_one_port_must_agree() -> None:
    text = GOOD + """  - id: M2
    driver: modbus-rtu
    port: /dev/ttyUSB0
    baudrate: 9600
    unit: 7
    points: [{name: v, address: 0, function: input}]
"""
    problems = errors_of(text, MQTT_PASSWORD="x")
    assert any("serial settings of /dev/ttyUSB0" in p for p in problems)
    assert any("unit 7 on /dev/ttyUSB0 is already used by devices[1]" in p for p in problems)


def test_profiles_merge_points_and_devices_can_override(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "meter.yaml").write_text(
        "driver: modbus\nkind: energy_meter\npoints:\n"
        "  - {name: v, address: 0, function: input, type: float32}\n"
        "  - {name: i, address: 6, function: input, type: float32}\n")
    (tmp_path / "site.yaml").write_text(
        "site: {id: s, name: s, gateway_id: g}\n"
        "devices:\n"
        "  - {id: M1, driver: modbus-tcp, host: h, profile: meter,\n"
        "     points: [{name: i, address: 8, function: input, type: float32}]}\n"
        "  - {id: M2, driver: modbus-tcp, host: h, profile: elevator-modbus}\n")
    config = load_config(tmp_path / "site.yaml")
    m1, m2 = config.devices
    assert isinstance(m1, ModbusTcpDevice) and m1.kind == "energy_meter"
    assert [(p.name, p.address) for p in m1.points] == [("v", 0), ("i", 8)]
    assert m2.kind == "elevator" and len(m2.points) == 18


def test_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    problems = errors_of("site: {id: s, name: s, gateway_id: g}\n"
                         "devices: [{id: X, driver: modbus-tcp, host: h, profile: nope}]\n")
    assert problems[0].startswith("devices[0].profile (line 2): profile 'nope' not found")
    assert "elevator-modbus" in problems[0]


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0),
    ("23h30m", 84600.0), ("1h 30m", 5400.0), ("1m30s", 90.0), ("2d12h", 216000.0),
    ("1min30s", 90.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30m1h", "1h30", "h", "1h1h", "1x", "5m 3", ""])
def test_a_duration_that_is_not_one_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration such as"):
        parse_duration(text)


def test_the_shipped_configs_are_valid() -> None:
    config = load_config(REPO / "config" / "examples" / "two-elevators.yaml", env={})
    assert {d.id for d in config.devices} == {"E1", "E2"}
    for example in sorted((REPO / "config").glob("examples/*.yaml")):
        load_config(example, env={"PLATFORM_MQTT_PASSWORD": "x", "MQTT_PASSWORD": "x",
                                  "LOCAL_MQTT_PASSWORD": "x"})


def _propgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)


def test_check_config_cli_reports_all_problems_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("unit: 3", "unit: 300").replace("host: 10.0.0.5", "hots: x")
                   .replace("stale_after: 2m", "stale_after: -1"))
    result = _propgw("check-config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"{bad}: 5 problems", result.stderr
    body = "\n".join(lines[1:])
    for fragment in ("devices[0].unit", "devices[0].hots", "devices[0].host",
                     "devices[2].stale_after", "brokers.local.password"):
        assert fragment in body


def test_check_config_cli_summarises_a_valid_file() -> None:
    result = _propgw("check-config", "config/examples/two-elevators.yaml")
    assert result.returncode == 0, result.stderr
    assert "config/examples/two-elevators.yaml: OK" in result.stdout
    assert "E1" in result.stdout and "elevator-trapped-between-floors" in result.stdout


def test_version() -> None:
    result = _propgw("--version")
    assert result.returncode == 0 and result.stdout.startswith("propgw ")


def test_a_bad_mapping_key_is_named_and_does_not_hang() -> None:
    problems = errors_of("site: {id: s, name: s, gateway_id: g}\nbrokers: {'bad id': {host: h}}\n")
    assert len(problems) == 1
    assert problems[0].startswith("brokers (line 2): key 'bad id': string should match pattern")


def test_a_misspelt_time_zone_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("site: {id: s, name: n, gateway_id: g, timezone: Asia/Shangai}\n")
    assert "did you mean 'Asia/Shanghai'" in info.value.render()


def test_a_mistake_in_a_devices_own_point_is_counted_among_its_own_points() -> None:
    # The profile's points are merged in front of the device's own: the error must still
    # name the point as the file numbers it, with its line.
    text = """
site: {id: s1, name: s, gateway_id: g}
devices:
  - id: E1
    driver: modbus-tcp
    host: 127.0.0.1
    profile: elevator-modbus
    points:
      - {name: extra_a, address: 100}
      - {name: extra_b, address: 101, type: float33}
"""
    (problem,) = errors_of(text)
    assert problem.startswith("devices[0].points[1].type (line 10): "), problem
    assert "found: 'float33'" in problem


def test_a_check_of_a_whole_section_does_not_end_in_found_dict() -> None:
    text = """
site: {id: s1, name: s, gateway_id: g}
brokers: {b: {host: 127.0.0.1}}
upstream: {broker: b}
telemetry:
  defaults: {min_interval: 20m, max_interval: 10m}
devices:
  - {id: M1, driver: modbus-tcp, host: 127.0.0.1, points: {name: kwh, address: 0}}
"""
    section, wrong_type = errors_of(text)
    assert section == ("telemetry.defaults (line 6): min_interval (1200s) must not be longer "
                       "than max_interval (600s)")
    assert wrong_type.endswith("input should be a valid list (found: dict)")


def test_read_linger_defaults_to_5ms_takes_0_to_turn_it_off_and_refuses_more_than_50ms() -> None:
    def broker(extra: str) -> str:
        return GOOD.replace("password: \"${MQTT_PASSWORD}\"}",
                            f"password: \"${{MQTT_PASSWORD}}\"{extra}}}")

    env = {"MQTT_PASSWORD": "x"}
    assert load_config_text(GOOD, env=env).brokers["local"].read_linger == 0.005
    assert load_config_text(broker(", read_linger: 0"), env=env).brokers["local"].read_linger == 0
    assert load_config_text(broker(", read_linger: 20ms"),
                            env=env).brokers["local"].read_linger == 0.02
    [too_long] = errors_of(broker(", read_linger: 1s"), **env)
    assert "brokers.local.read_linger" in too_long
    assert "must be at most 50ms (got 1000ms)" in too_long and "0 turns the linger off" in too_long
    [negative] = errors_of(broker(", read_linger: -5"), **env)
    assert "brokers.local.read_linger" in negative


@pytest.mark.parametrize(("new", "expected"), [
    ("work_orders: {priorities: {P0: {ladder: []}}}",
     "work_orders.priorities.P0.ladder (line 2): at least 1 entry, got 0"),
    ("accounting: {counters: []}", "accounting.counters (line 2): at least 1 entry, got 0"),
])
def test_too_few_or_too_many_entries_say_how_many(new: str, expected: str) -> None:
    """Not pydantic's "List should have at least 1 item after validation, not 0"."""
    with pytest.raises(ConfigError) as caught:
        load_config_text("site: {id: s1, name: x, gateway_id: gw1}\n" + new + "\n")
    assert expected in str(caught.value)
