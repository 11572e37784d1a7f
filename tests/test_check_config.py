"""``propgw check-config``: warnings for valid files that are probably wrong, -c, --verbose,
--strict, and a closed pipe; ``propgw run`` logs the same warnings when it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import load_config, load_config_text
from gateway.errors import ConfigError, ConfigProblem

REPO = Path(__file__).resolve().parents[1]

SITE = """
site: {id: s1, name: 阳光花园, gateway_id: gw1}
brokers:
  local: {host: 127.0.0.1, port: 1883}
upstream: {broker: local}
devices:
  - id: E1
    driver: modbus-tcp
    host: 127.0.0.1
    profile: elevator-modbus
    location: {building: "1"}
"""

RULE = """
rules:
  - id: overspeed
    kind: elevator
    when: {point: car_speed, gt: 2.5}
    category: elevator_fault
    priority: P2
    message: {zh: "{device_name} 超速 {car_speed}", en: "%s"}
"""


def warnings_of(text: str) -> list[str]:
    found: list[ConfigProblem] = []
    load_config_text(text, source="site.yaml", env={}, warnings=found)
    return [str(w) for w in found]


def with_point(point: str, device_extra: str = "") -> str:
    return (SITE + device_extra + "    points:\n      - " + point + "\n"
            + RULE % "{device_name} overspeed")


def propgw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False,
                          env={**os.environ, **(env or {})})


# --------------------------------------------------------------------------- Modbus addresses


def test_a_4xxxx_holding_address_is_a_warning_with_the_fix() -> None:
    found = warnings_of(with_point("{name: setpoint, address: 40001}"))
    assert len(found) == 1, found
    assert found[0].startswith("devices[0].points[0].address (line 13): address 40001 looks "
                               "like a Modicon reference")
    assert "for holding register 0; write `address: 0`." in found[0]
    assert "address_verified: true" in found[0]


def test_a_3xxxx_address_left_on_holding_gets_the_function_too() -> None:
    found = warnings_of(with_point("{name: volts, address: 30007, type: float32}"))
    assert len(found) == 1, found
    assert "for input register 6; write `address: 6, function: input`" in found[0]


def test_a_1xxxx_bit_address_is_a_warning_but_a_register_there_is_not() -> None:
    found = warnings_of(with_point("{name: door, address: 10003, function: discrete_input, "
                                   "type: bool}"))
    assert len(found) == 1 and "for discrete input 2; write `address: 2`" in found[0], found
    # A real register address in that range (the DTSU666's energy at 0x4000): no warning.
    assert warnings_of(with_point("{name: kwh, address: 0x4000, function: input, "
                                  "type: float32}")) == []


def test_a_zero_padded_coil_reference_warns_that_yaml_reads_it_as_octal() -> None:
    found = warnings_of(with_point("{name: lamp, address: 00017, function: coil, type: bool}"))
    assert len(found) == 1, found
    assert "address 00017 looks like a Modicon reference (0xxxx = coils" in found[0]
    assert "YAML also reads 00017 as the octal number 15, not 17" in found[0]
    assert "write `address: 16, function: coil`" in found[0]


def test_address_verified_on_the_point_or_the_device_silences_the_warning() -> None:
    assert warnings_of(with_point("{name: sunspec_id, address: 40001, type: uint16, "
                                  "address_verified: true}")) == []
    assert warnings_of(with_point("{name: sunspec_id, address: 40001}",
                                  "    address_verified: true\n")) == []


def test_the_shipped_examples_profiles_and_packs_give_no_warnings() -> None:
    env = {"PLATFORM_MQTT_PASSWORD": "x", "LOCAL_MQTT_PASSWORD": "x"}
    for example in sorted((REPO / "config" / "examples").glob("*.yaml")):
        found: list[ConfigProblem] = []
        load_config(example, env=env, warnings=found)
        assert found == [], (example, [str(w) for w in found])


# --------------------------------------------------------------------------- placeholders


def test_a_misspelt_placeholder_is_a_warning_with_a_suggestion() -> None:
    found = warnings_of(SITE + RULE % "{device_name} at {car_speeed} m/s")
    assert len(found) == 1, found
    assert found[0].startswith("rules[0].message.en")
    assert "{car_speeed} is not a point or built-in placeholder; did you mean car_speed?" \
        in found[0]


@pytest.mark.parametrize("en", ["{device}: {device_name} ({location}) {car_speed} m/s",
                                "{{literal braces}} {members}"])
def test_valid_placeholders_give_no_warning(en: str) -> None:
    assert warnings_of(SITE + RULE % en) == []


def test_a_point_missing_on_some_devices_names_them() -> None:
    text = SITE + """  - id: E2
    driver: modbus-tcp
    host: 127.0.0.1
    kind: elevator
    points: [{name: car_status, address: 0}, {name: car_speed, address: 12, type: float32}]
""" + RULE % "{car_position} {car_speed}"
    found = warnings_of(text)
    assert found == ["rules[0].message.en (line 24): {car_position} is not a point of E2: on "
                     "those devices it would reach operators as written"], found


def test_broken_templates_are_warnings() -> None:
    (unclosed,) = warnings_of(SITE + RULE % "{device_name overspeed")
    assert "cannot be filled in" in unclosed and "{{" in unclosed
    (positional,) = warnings_of(SITE + RULE % "{device_name} {}")
    assert "{} names nothing" in positional
    # Values are display text ("2.5"): a float format fails and the alarm stage then sends
    # the whole template unfilled.
    (formatted,) = warnings_of(SITE + RULE % "{device_name} at {car_speed:.1f} m/s")
    assert "{car_speed:.1f}: a format or conversion cannot be applied" in formatted
    assert formatted.endswith("write {car_speed}")


# --------------------------------------------------------------------------- empty site


def test_an_empty_site_warns_about_devices_rules_and_upstream() -> None:
    found = warnings_of("site: {id: s1, name: n, gateway_id: g}\n")
    assert [w.split(":")[0] for w in found] == ["devices", "rules", "upstream"], found
    assert "the gateway will read nothing" in found[0]
    assert "no alarm will ever be raised" in found[1]
    assert "stay on this gateway" in found[2]


# --------------------------------------------------------------------------- the command


def test_check_config_prints_warnings_on_stderr_and_fails_only_with_strict(
        tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(with_point("{name: setpoint, address: 40001}"), encoding="utf-8")
    plain = propgw("check-config", str(site))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith(f"{site}: OK\n")
    assert "warning: devices[0].points[0].address (line 13): address 40001" in plain.stderr
    assert plain.stderr.endswith(f"{site}: 1 warning\n")
    strict = propgw("check-config", "--strict", "-c", str(site))
    assert strict.returncode == 2
    assert strict.stderr.endswith(f"{site}: 1 warning (--strict: failing)\n")


def test_check_config_takes_the_file_as_c_like_run() -> None:
    example = "config/examples/two-elevators.yaml"
    short, long_, both = (propgw("check-config", "-c", example),
                          propgw("check-config", "--config", example),
                          propgw("check-config", example, "-c", example))
    for result in (short, long_, both):
        assert result.returncode == 0 and result.stdout.startswith(f"{example}: OK"), result
    assert short.stdout == propgw("check-config", example).stdout
    neither = propgw("check-config")
    assert neither.returncode == 2 and "the config file is missing" in neither.stderr
    two = propgw("check-config", example, "-c", "config/examples/site.yaml")
    assert two.returncode == 2 and "give the config file once" in two.stderr


def test_verbose_prints_each_rules_condition() -> None:
    result = propgw("check-config", "--verbose", "config/examples/two-elevators.yaml")
    assert result.returncode == 0, result.stderr
    assert """
    when all of:
      car_status == 0
      door_zone == 2
      door_status == 1
      any of:
        passenger_status == 1
        alarm_button == 1
""" in result.stdout, result.stdout
    assert "when" not in propgw("check-config", "config/examples/two-elevators.yaml").stdout


def test_verbose_prints_the_packs_conditions() -> None:
    result = propgw("check-config", "-v", "config/examples/site.yaml",
                    env={"PLATFORM_MQTT_PASSWORD": "x", "LOCAL_MQTT_PASSWORD": "x"})
    assert result.returncode == 0, result.stderr
    rules = result.stdout.count("\n    when ")
    assert rules == int(result.stdout.split(" rule(s):")[0].rsplit("\n", 1)[1]) > 10
    conditions = result.stdout.split(" rule(s):")[1].splitlines()
    assert not [x for x in conditions if x.lstrip().startswith("{")], "a condition printed raw"


@pytest.mark.parametrize(("args", "code"), [
    (["check-config", "--verbose", "config/examples/two-elevators.yaml"], 141),
    (["sim", "list"], 141),
    (["--help"], 0),  # argparse itself ignores a failed write of its help
])
def test_a_closed_stdout_ends_quietly(args: list[str], code: int) -> None:
    # Our end of the pipe is closed before the child has even imported anything, so its
    # first write fails, as with `propgw ... | head -1` on a long output.
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert err.decode() == ""
    assert proc.returncode == code


# --------------------------------------------------------------------------- propgw run


def test_run_logs_the_warnings_when_it_starts(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: s1, name: n, gateway_id: g}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(site)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("upstream" in x for x in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    logged = [x for x in lines if f"config {site}: " in x]
    assert len(logged) == 3, lines
    assert "WARNING" in logged[0] and "devices: no devices" in logged[0]


def test_a_six_digit_reference_is_an_error_with_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(with_point("{name: setpoint, address: 400010}"), env={})
    (problem,) = info.value.problems
    assert problem.path == "devices[0].points[0].address (line 13)"
    assert problem.message.endswith("; 400010 looks like a 6-digit Modicon reference for "
                                    "holding register 9: write `address: 9, function: "
                                    "holding`"), problem.message


def test_a_leading_zero_is_a_warning_because_yaml_reads_octal() -> None:
    (found,) = warnings_of(with_point("{name: setpoint, address: 010}"))
    assert "address 010: YAML reads a number with a leading zero as octal, so this is " \
           "address 8, not 10; write `address: 10`" in found
    assert warnings_of(with_point("{name: setpoint, address: 0}")) == []


def test_verbose_prints_a_change_condition_in_words() -> None:
    from gateway.check_cli import format_condition
    from gateway.config import load_config_text

    config = load_config_text("""
site: {id: s1, name: s, gateway_id: g}
brokers: {local: {host: 127.0.0.1}}
devices:
  - id: D1
    driver: mqtt
    points:
      - {name: open, topic: d/state, path: open, type: bool}
      - {name: locked, topic: d/state, path: locked, type: bool}
rules:
  - id: opened-while-locked
    devices: [D1]
    category: door_forced
    priority: P1
    when: {point: open, becomes: true, from: false, while: {point: locked, eq: true}}
    message: {zh: "{device_name}", en: "{device_name}"}
""")
    (rule,) = config.rules
    assert format_condition(rule.when) == [
        "open changes from false to true while (locked == true), true for 5s"]
