"""Rules across devices: a door rule reads the fire panel's zone state by reference
(``{device: fire-panel-1, point: zone3_state, eq: FIRE}``), follows either side, keeps the
quality rules of own points, is checked by ``check-config`` and survives a reload; and the
same rule through a real gateway, over mosquitto, up to the work order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.config import GatewayConfig, lint, load_config, load_config_text, references
from gateway.errors import ConfigError
from gateway.model import Quality
from tests.gateway_support import probed_gateway, until
from tests.rules_support import RuleRig, running_rigs
from tests.support import Mosquitto

REPO = Path(__file__).resolve().parents[1]

DEVICES = """
site: {{id: s1, name: s, gateway_id: g}}
devices:
  - {{id: door-3, driver: modbus-tcp, host: 127.0.0.1, kind: door,
     points: [{{name: locked, address: 0, type: bit, bit: 0}}, {{name: open, address: 0, type: bit, bit: 1}}]}}
  - {{id: door-4, driver: modbus-tcp, host: 127.0.0.1, kind: door,
     points: [{{name: locked, address: 0, type: bit, bit: 0}}, {{name: open, address: 0, type: bit, bit: 1}}]}}
  - {{id: fire-panel-1, driver: modbus-tcp, host: 127.0.0.1, kind: fire_panel,
     points: [{{name: zone3_state, address: 1, type: uint16}}, {{name: zone4_state, address: 2, type: uint16}}]}}
rules:
{rules}
"""
#: zone3_state: 0 normal, 2 fire (what the panel's register says).
LOCKED_IN_FIRE = """
  - id: locked-in-fire
    devices: [door-3]
    when:
      all:
        - {point: locked, eq: true}
        - {device: fire-panel-1, point: zone3_state, eq: 2}
    category: fire_alarm
    priority: P0
    message: {zh: 火警时门仍锁闭, en: door locked during fire}
"""
ZONE_NOT_NORMAL = """
  - id: zone-not-normal
    devices: [door-3]
    when: {device: fire-panel-1, point: zone3_state, ne: 0}
    category: fire_alarm
    priority: P1
    message: {zh: x, en: x}
"""


def site(rules: str) -> GatewayConfig:
    return load_config_text(DEVICES.format(rules=rules))


@pytest.fixture
async def make_rig(fake_clock: FakeClock) -> AsyncIterator[Callable[[GatewayConfig], RuleRig]]:
    async with running_rigs() as runner:
        yield lambda config: runner.start(RuleRig(fake_clock, config))


# --------------------------------------------------------------------------- evaluation


async def test_the_panels_change_alone_raises_and_clears_the_door_rule(
        make_rig: Callable[[GatewayConfig], RuleRig]) -> None:
    rig = make_rig(site(LOCKED_IN_FIRE))
    await rig.publish("door-3", locked=True, open=False)
    await rig.publish("fire-panel-1", zone3_state=0, zone4_state=0)
    assert rig.changes == []
    before = rig.rules.evaluations
    await rig.publish("fire-panel-1", zone3_state=2, zone4_state=0)  # no door reading
    assert rig.changes == [("locked-in-fire@door-3", True)]
    assert rig.rules.evaluations == before + 1, "the panel's reading judged the door rule once"
    evidence = rig.detections[0].evidence
    assert evidence == {"locked": True, "fire-panel-1:zone3_state": 2}
    await rig.publish("fire-panel-1", zone3_state=0, zone4_state=0)
    assert rig.changes[-1] == ("locked-in-fire@door-3", False)
    # And from the door's side: the panel in fire, the door locks again.
    await rig.publish("door-3", locked=False, open=True)
    await rig.publish("fire-panel-1", zone3_state=2, zone4_state=0)
    assert rig.changes[-1] == ("locked-in-fire@door-3", False)
    await rig.publish("door-3", locked=True, open=False)
    assert rig.changes[-1] == ("locked-in-fire@door-3", True)


async def test_a_point_nobody_references_judges_no_rule_of_another_device(
        make_rig: Callable[[GatewayConfig], RuleRig]) -> None:
    rig = make_rig(site(LOCKED_IN_FIRE))
    await rig.publish("door-3", locked=True, open=False)
    before = rig.rules.evaluations
    await rig.publish("fire-panel-1", zone4_state=2)  # zone 4: the rule reads zone 3 only
    assert rig.rules.evaluations == before
    await rig.publish("door-4", locked=True)  # the rule is door-3's only
    assert rig.rules.evaluations == before


async def test_a_referenced_point_in_comm_loss_or_bad_raises_nothing_and_clears_nothing(
        make_rig: Callable[[GatewayConfig], RuleRig], fake_clock: FakeClock) -> None:
    rig = make_rig(site(ZONE_NOT_NORMAL + LOCKED_IN_FIRE))
    await rig.publish("door-3", locked=True, open=False)
    await rig.publish("fire-panel-1", zone3_state=0)
    # The panel stops answering: "not 0" must not read a missing value as a fire.
    await rig.publish("fire-panel-1", Quality.COMM_LOSS, zone3_state=None)
    await rig.publish("fire-panel-1", Quality.BAD, zone3_state=None)
    await fake_clock.advance(30)
    assert rig.changes == []
    # In fire, then silent: the alarm stays until the panel says the zone is normal again.
    await rig.publish("fire-panel-1", zone3_state=2)
    assert sorted(rig.changes) == [("locked-in-fire@door-3", True), ("zone-not-normal@door-3", True)]
    await rig.publish("fire-panel-1", Quality.COMM_LOSS, zone3_state=None)
    await fake_clock.advance(30)
    assert len(rig.changes) == 2
    await rig.publish("fire-panel-1", zone3_state=0)
    assert sorted(rig.changes[2:]) == [("locked-in-fire@door-3", False),
                                     ("zone-not-normal@door-3", False)]


async def test_the_panels_silence_is_said_with_comm_loss_on_the_reference(
        make_rig: Callable[[GatewayConfig], RuleRig]) -> None:
    rig = make_rig(site("""
  - id: panel-silent
    devices: [door-3]
    when: {device: fire-panel-1, comm_loss: true}
    category: fire_fault
    priority: P2
    message: {zh: x, en: x}
"""))
    await rig.publish("fire-panel-1", zone3_state=0, zone4_state=0)
    await rig.publish("fire-panel-1", Quality.COMM_LOSS, zone3_state=None, zone4_state=None)
    assert rig.changes == [("panel-silent@door-3", True)]


async def test_a_group_rule_reads_the_panel_for_every_door_of_the_zone(
        make_rig: Callable[[GatewayConfig], RuleRig]) -> None:
    config = load_config_text(DEVICES.format(rules="""
  - id: zone-doors-locked-in-fire
    kind: door
    group_by: site
    when:
      all:
        - {device: fire-panel-1, point: zone3_state, eq: 2}
        - any_device: {point: locked, eq: true}
    category: fire_alarm
    priority: P0
    message: {zh: x, en: x}
""").replace("kind: door,\n", "kind: door, location: {zone: z3},\n"))
    rig = make_rig(config)
    await rig.publish("door-3", locked=False, open=True)
    await rig.publish("door-4", locked=True, open=False)
    await rig.publish("fire-panel-1", zone3_state=2)
    assert rig.changes == [("zone-doors-locked-in-fire@site", True)]
    assert rig.detections[0].evidence["fire-panel-1:zone3_state"] == 2


async def test_a_reload_that_adds_a_reference_follows_the_panel_at_once(
        make_rig: Callable[[GatewayConfig], RuleRig]) -> None:
    rig = make_rig(site(ZONE_NOT_NORMAL.replace("ne: 0", "eq: 99")))
    await rig.publish("door-3", locked=True, open=False)
    await rig.publish("fire-panel-1", zone3_state=2)
    assert rig.changes == []
    _, fresh, dropped = await rig.rules.reconfigure(site(ZONE_NOT_NORMAL + LOCKED_IN_FIRE))
    assert (fresh, dropped) == (2, 0)  # zone-not-normal changed, locked-in-fire new
    assert sorted(rig.changes) == [("locked-in-fire@door-3", True), ("zone-not-normal@door-3", True)]
    await rig.publish("fire-panel-1", zone3_state=0)
    assert sorted(rig.changes[2:]) == [("locked-in-fire@door-3", False),
                                     ("zone-not-normal@door-3", False)]
    # Reloaded back without references: the panel judges nothing any more.
    await rig.rules.reconfigure(site(ZONE_NOT_NORMAL.replace(
        "{device: fire-panel-1, point: zone3_state, ne: 0}", "{point: locked, eq: false}")))
    before = rig.rules.evaluations
    await rig.publish("fire-panel-1", zone3_state=2)
    assert rig.rules.evaluations == before


# --------------------------------------------------------------------------- the config


def problems_of(rules: str, tmp_path: Path | None = None) -> list[str]:
    try:
        if tmp_path is None:
            load_config_text(DEVICES.format(rules=rules), source="site.yaml")
        else:
            (tmp_path / "site.yaml").write_text(DEVICES.format(rules=rules))
            load_config(tmp_path / "site.yaml")
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_an_unknown_device_or_point_is_reported_at_its_key() -> None:
    assert problems_of(LOCKED_IN_FIRE.replace("fire-panel-1", "fire-panel-9")) == [
        "rules[0].when.all[1].device (line 17): unknown device 'fire-panel-9' (rule "
        "locked-in-fire; devices: door-3, door-4, fire-panel-1)"]
    assert problems_of(LOCKED_IN_FIRE.replace("zone3_state", "zone9_state")) == [
        "rules[0].when.all[1].point (line 17): device 'fire-panel-1' has no point "
        "'zone9_state' (rule locked-in-fire; points: zone3_state, zone4_state)"]
    # The rule's own points are still the door's: the panel's point is no door point.
    assert problems_of(LOCKED_IN_FIRE.replace(
        "{device: fire-panel-1, point: zone3_state, eq: 2}", "{point: zone3_state, eq: 2}")) == [
        "rules[0].when (line 14): device 'door-3' has no point(s) zone3_state "
        "(rule locked-in-fire)"]


def test_a_reference_holds_no_quantifier_and_no_second_reference() -> None:
    found = problems_of(ZONE_NOT_NORMAL.replace(
        "{device: fire-panel-1, point: zone3_state, ne: 0}",
        "{device: fire-panel-1, any: [{device: door-4, point: locked, eq: true}]}"))
    assert len(found) == 1 and "cannot hold all_devices, any_device or another device" in found[0]


def test_a_referenced_templated_device_is_found_by_its_concrete_id() -> None:
    zones = ("brokers: {{local: {{host: 127.0.0.1}}}}\ndevices:\n"
             "  - {{id: \"panel-1-zone-{{zone}}\", driver: mqtt, kind: fire_zone,\n"
             "     points: [{{name: state, topic: \"fire/panel-1/{{zone}}/state\", "
             "type: int}}]}}\n")
    text = DEVICES.replace("devices:\n", zones, 1)
    rule = LOCKED_IN_FIRE.replace("fire-panel-1", "panel-1-zone-3").replace("zone3_state",
                                                                           "state")
    config = load_config_text(text.format(rules=rule))
    assert config.rules[0].id == "locked-in-fire"
    with pytest.raises(ConfigError, match="unknown device 'panel-2-zone-3'"):
        load_config_text(text.format(rules=rule.replace("panel-1-", "panel-2-")))
    with pytest.raises(ConfigError, match="device 'panel-1-zone-3' has no point 'zone'"):
        load_config_text(text.format(rules=rule.replace("point: state", "point: zone")))


def test_a_detector_pack_names_the_panel_with_a_parameter(tmp_path: Path) -> None:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "fire-doors.yaml").write_text("""
name: fire-doors
kind: door
params: {panel: fire-panel-1, zone_point: zone3_state}
rules:
  - id: locked-in-fire
    category: fire_alarm
    priority: P0
    when:
      all:
        - {point: locked, eq: true}
        - {device: $panel, point: $zone_point, eq: 2}
    message: {zh: x, en: x}
""")
    site_file = tmp_path / "site.yaml"
    site_file.write_text(DEVICES.format(rules="  []").replace("rules:\n", "rules:") + """
detectors: [fire-doors]
""")
    config = load_config(site_file)
    assert [r.id for r in config.rules] == ["fire-doors.locked-in-fire"]
    site_file.write_text(site_file.read_text().replace(
        "detectors: [fire-doors]", "detectors: [{use: fire-doors, params: {panel: panel-x}}]"))
    with pytest.raises(ConfigError) as caught:
        load_config(site_file)
    (problem,) = caught.value.problems
    assert "unknown device 'panel-x'" in str(problem)
    assert "fire-doors" in str(problem), "the pack the rule comes from is named"


def propgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False, env={**os.environ})


@pytest.mark.parametrize(("old", "new", "key"), [
    ("fire-panel-1", "fire-panel-9", "rules[0].when.all[1].device"),
    ("zone3_state", "zone9_state", "rules[0].when.all[1].point"),
])
def test_check_config_exits_2_with_the_key_path(tmp_path: Path, old: str, new: str,
                                                key: str) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(DEVICES.format(rules=LOCKED_IN_FIRE.replace(old, new)))
    done = propgw("check-config", "-c", str(site_file))
    assert done.returncode == 2, done.stdout + done.stderr
    assert key in done.stderr and new in done.stderr
    site_file.write_text(DEVICES.format(rules=LOCKED_IN_FIRE))
    assert propgw("check-config", "-c", str(site_file)).returncode == 0


# --------------------------------------------------------------------------- a real gateway


GATEWAY = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
devices:
  - {{id: door-3, name: 3区疏散门, driver: mqtt, broker: devices, kind: door,
     location: {{building: "1", zone: "3"}},
     points: [{{name: locked, topic: acs/door-3/locked, type: bool}}]}}
  - {{id: fire-panel-1, name: 1号火灾报警控制器, driver: mqtt, broker: devices,
     kind: fire_panel, stale_after: 60s,
     points: [{{name: zone3_state, topic: fire/panel-1/zone3, type: string}}]}}
rules:
  - id: locked-in-fire
    devices: [door-3]
    when:
      all:
        - {{point: locked, eq: true}}
        - {{device: fire-panel-1, point: zone3_state, eq: FIRE}}
    category: fire_alarm
    priority: P0
    message: {{zh: "{{device_name}} 火警时仍锁闭", en: "{{device_name}} locked during fire"}}
  - id: zone-not-normal
    devices: [door-3]
    when: {{device: fire-panel-1, point: zone3_state, ne: NORMAL}}
    category: fire_alarm
    priority: P1
    message: {{zh: 3区非正常, en: zone 3 not normal}}
"""


def gateway_site(tmp_path: Path, port: int) -> GatewayConfig:
    return load_config_text(GATEWAY.format(state=tmp_path / "state", port=port))


@pytest.mark.mosquitto
async def test_a_fire_door_rule_reads_the_panels_zone_state_by_reference(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    async with probed_gateway(gateway_site(tmp_path, mosquitto.port), mosquitto.port,
                              fake_clock) as (probe, orders):
        rules, active, publish = probe.rules, probe.active, probe.publish

        both = {"locked-in-fire@door-3", "zone-not-normal@door-3"}
        await publish("acs/door-3/locked", "true", judged=1)  # locked-in-fire reads it
        await publish("fire/panel-1/zone3", "NORMAL", judged=2)  # both rules read it
        assert active() == set()
        # The panel reports fire in zone 3; the door says nothing new.
        await publish("fire/panel-1/zone3", "FIRE", judged=2)
        assert active() == both
        await until(lambda: len(orders) >= 2, fake_clock)
        order = next(o for o in orders if o["alarm_id"] == "locked-in-fire@door-3")
        assert order["alarm_active"] is True
        assert order["evidence"] == {"locked": True, "fire-panel-1:zone3_state": "FIRE"}
        # The panel clears: so do both alarms, and the platform hears it.
        await publish("fire/panel-1/zone3", "NORMAL", judged=2)
        assert active() == set()
        await until(lambda: any(o["alarm_id"] == "locked-in-fire@door-3"
                                and o["alarm_active"] is False for o in orders), fake_clock)
        # The panel falls silent (comm-loss after stale_after): no false "not normal".
        # Neither rule depends on time, so only the panel's comm-loss readings judge them.
        seen, before = len(orders), rules.evaluations
        await fake_clock.advance(61)
        await until(lambda: rules.evaluations >= before + 2, fake_clock)
        async with rules._lock:
            pass
        await fake_clock.advance(5)
        assert active() == set()
        assert all(o["alarm_active"] is False for o in orders[seen:])


def test_the_documented_pairs_load_against_the_bundled_profiles() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    start = doc.index("### Conditions on other devices")
    section = doc[start:doc.index("\n### ", start)]  # "#### One rule..." included
    rules = "".join(re.findall(r"```yaml\n(.*?)```", section, re.S))
    config = load_config_text("""
site: {id: s, name: s, gateway_id: g}
brokers: {local: {host: 127.0.0.1}}
devices:
  - {id: door-3F-east, driver: mqtt, kind: access_door, location: {zone: "3"},
     points: [{name: locked, topic: acs/3fe/locked, type: bool}]}
  - {id: "{panel}-zone-{zone}", driver: mqtt, profile: fire-panel-zone-mqtt}
  - {id: "{panel}", driver: mqtt, profile: fire-panel-mqtt}
  - {id: E1, driver: modbus-tcp, host: 127.0.0.1, profile: elevator-modbus}
  - {id: main-meter, driver: modbus-tcp, host: 127.0.0.1, profile: chint-dtsu666}
rules:
""" + rules)
    assert [r.id for r in config.rules] == [
        "door-locked-in-fire", "car-not-homed-in-fire", "stopped-between-floors-in-power-cut",
        "door-locked-in-zone-fire"]
    assert {ref.device for r in config.rules for ref in references(r.when)} == {
        "FACP-1-zone-3", "FACP-1", "main-meter", "FACP-1-zone-{zone}"}
    assert [w for w in lint(config) if w[0].startswith("rules")] == [], \
        "the messages' referenced values are no unknown placeholders"


def test_check_config_verbose_prints_the_referenced_device() -> None:
    from gateway.check_cli import format_condition

    (rule,) = site(LOCKED_IN_FIRE).rules
    assert format_condition(rule.when) == [
        "all of:", "  locked == true", "  on fire-panel-1: zone3_state == 2"]
    (rule,) = site(ZONE_NOT_NORMAL.replace(
        "{device: fire-panel-1, point: zone3_state, ne: 0}",
        "{device: fire-panel-1, any: [{point: zone3_state, eq: 2}, {comm_loss: true}]}")).rules
    assert format_condition(rule.when) == [
        "on fire-panel-1:", "  any of:", "    zone3_state == 2",
        "    the device does not answer (comm loss)"]
