"""One rule for a whole site: a reference filled from the rule's own device
(``{device: "FACP-1-zone-{zone}", point: event, eq: FIRE}`` on every door, each door's
``location.zone`` naming its panel zone), what happens where it names nothing, what
``check-config`` says, referenced values in messages; and the rule through a real gateway,
over mosquitto, with a panel split by its payload's zone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.config import GatewayConfig, lint, load_config_text, offline_warnings
from gateway.errors import ConfigError
from tests.gateway_support import probed_gateway, until
from tests.rules_support import RuleRig, running_rigs
from tests.support import Mosquitto

REPO = Path(__file__).resolve().parents[1]


def door(dev_id: str, zone: str | None) -> str:
    where = f"location: {{building: '1', zone: '{zone}'}}, " if zone is not None else ""
    return (f"  - {{id: {dev_id}, driver: modbus-tcp, host: 127.0.0.1, kind: door, {where}"
            f"points: [{{name: locked, address: 0, type: bit, bit: 0}}]}}\n")


PANEL = """  - {id: "FACP-1-zone-{zone}", driver: mqtt, kind: fire_zone, split_by: {zone: zone},
     location: {zone: "{zone}"},
     points: [{name: event, topic: fire/FACP-1/events, path: event, type: string}]}
"""
HEAD = "site: {id: s1, name: s, gateway_id: g}\nbrokers: {local: {host: 127.0.0.1}}\n"
#: The one rule of the site: every door of a zone stays unlocked while its zone is in fire.
LOCKED_IN_ZONE_FIRE = """
  - id: locked-in-zone-fire
    kind: door
    when:
      all:
        - {point: locked, eq: true}
        - {device: "FACP-1-zone-{zone}", point: event, eq: FIRE}
    category: fire_alarm
    priority: P0
    message:
      zh: "{device_name} 在{zone}区火警（{FACP-1-zone-{zone}:event}）时仍锁闭"
      en: "{device_name} locked while its zone reads {FACP-1-zone-{zone}:event}"
"""


def site_text(doors: Mapping[str, str | None], rules: str = LOCKED_IN_ZONE_FIRE) -> str:
    return (HEAD + "devices:\n" + "".join(door(d, z) for d, z in doors.items()) + PANEL
            + "rules:\n" + rules)


THREE = {"door-1": "1", "door-2": "2", "door-3": "3"}


@pytest.fixture
async def make_rig(fake_clock: FakeClock) -> AsyncIterator[Callable[[str], RuleRig]]:
    async with running_rigs() as runner:
        yield lambda text: runner.start(RuleRig(fake_clock, load_config_text(text)))


# --------------------------------------------------------------------------- evaluation


async def test_one_rule_raises_exactly_the_door_of_the_zone_in_fire(
        make_rig: Callable[[str], RuleRig]) -> None:
    rig = make_rig(site_text(THREE))
    for name in THREE:
        await rig.publish(name, locked=True)
    for zone in "123":
        await rig.publish(f"FACP-1-zone-{zone}", event="NORMAL")
    assert rig.changes == []
    before = rig.rules.evaluations
    await rig.publish("FACP-1-zone-2", event="FIRE")
    assert rig.changes == [("locked-in-zone-fire@door-2", True)]
    assert rig.rules.evaluations == before + 1, "zone 2's reading judged door-2's rule only"
    (alarm,) = rig.detections
    assert alarm.evidence == {"locked": True, "FACP-1-zone-2:event": "FIRE"}
    assert alarm.message_en == "door-2 locked while its zone reads FIRE"
    # Zone 1 in fire too, door-1 unlocked: nothing new; zone 2 back to normal clears door-2.
    await rig.publish("door-1", locked=False)
    await rig.publish("FACP-1-zone-1", event="FIRE")
    await rig.publish("FACP-1-zone-2", event="NORMAL")
    assert rig.changes == [("locked-in-zone-fire@door-2", True),
                        ("locked-in-zone-fire@door-2", False)]


async def test_a_configured_door_that_never_reported_is_judged_on_the_panels_change(
        make_rig: Callable[[str], RuleRig]) -> None:
    """A door with a literal id has its rules from start-up: a rule that needs nothing of the
    door fires on the panel alone; one that needs the door's point stays unknown (a door that
    never reported is not known to be locked) and raises nothing."""
    release = """
  - id: release-in-zone-fire
    kind: door
    when: {device: "FACP-1-zone-{zone}", point: event, eq: FIRE}
    category: fire_alarm
    priority: P1
    message: {zh: x, en: x}
"""
    rig = make_rig(site_text(THREE, LOCKED_IN_ZONE_FIRE + release))
    await rig.publish("FACP-1-zone-2", event="FIRE")  # no door has said anything
    assert rig.changes == [("release-in-zone-fire@door-2", True)]


async def test_a_door_whose_zone_names_no_device_is_unknown_not_stale(
        make_rig: Callable[[str], RuleRig], fake_clock: FakeClock) -> None:
    """``stale`` on a point that never reported is true; on a reference that names nothing
    (no zone, a zone that makes no id) it must stay unknown, or every door without a panel
    zone would raise a "panel silent" order."""
    rule = """
  - id: zone-panel-silent
    kind: door
    when: {device: "FACP-1-zone-{zone}", point: event, stale: 60s}
    category: communication
    priority: P3
    message: {zh: x, en: "silent: {FACP-1-zone-{zone}:event}"}
"""
    rig = make_rig(site_text({"door-1": "1", "door-x": None, "door-y": "9 east"}, rule))
    await fake_clock.advance(61)
    await fake_clock.advance(1)
    assert rig.changes == [("zone-panel-silent@door-1", True)]
    assert rig.detections[0].message_en == "silent: -"


async def test_a_templated_door_fills_the_reference_from_its_id(
        make_rig: Callable[[str], RuleRig]) -> None:
    text = site_text({}).replace("devices:\n", """devices:
  - {id: "door-{zone}-{n}", driver: mqtt, kind: door,
     points: [{name: locked, topic: "acs/{zone}/{n}/locked", type: bool}]}
""")
    rig = make_rig(text)
    await rig.publish("door-2-7", locked=True)
    await rig.publish("door-3-1", locked=True)
    await rig.publish("FACP-1-zone-2", event="FIRE")
    assert rig.changes == [("locked-in-zone-fire@door-2-7", True)]


async def test_a_group_rule_fills_the_reference_from_its_groups_zone(
        make_rig: Callable[[str], RuleRig]) -> None:
    rule = """
  - id: zone-doors-locked-in-fire
    kind: door
    group_by: zone
    when:
      all:
        - {device: "FACP-1-zone-{zone}", point: event, eq: FIRE}
        - {any_device: {point: locked, eq: true}}
    category: fire_alarm
    priority: P0
    message: {zh: x, en: x}
"""
    rig = make_rig(site_text({"door-1": "1", "door-2a": "2", "door-2b": "2"}, rule))
    for name in ("door-1", "door-2a", "door-2b"):
        await rig.publish(name, locked=name == "door-2b")
    await rig.publish("FACP-1-zone-1", event="FIRE")
    assert rig.changes == []
    await rig.publish("FACP-1-zone-2", event="FIRE")
    assert rig.changes == [("zone-doors-locked-in-fire@zone:2", True)]


async def test_a_reload_that_gives_a_door_its_zone_follows_that_zone(
        make_rig: Callable[[str], RuleRig]) -> None:
    rig = make_rig(site_text({"door-1": "1", "door-2": None}))
    await rig.publish("door-2", locked=True)
    await rig.publish("FACP-1-zone-2", event="FIRE")
    assert rig.changes == []
    await rig.rules.reconfigure(load_config_text(site_text({"door-1": "1", "door-2": "2"})))
    assert rig.changes == [("locked-in-zone-fire@door-2", True)], "judged at once on reload"


# --------------------------------------------------------------------------- check-config


def problems(text: str) -> list[str]:
    try:
        load_config_text(text, source="site.yaml")
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def warnings(text: str) -> list[tuple[str, str]]:
    return [w for w in lint(load_config_text(text)) if ".when" in w[0]]


def test_a_placeholder_no_device_of_the_rule_has_is_an_error_at_its_key() -> None:
    (problem,) = problems(site_text(THREE, LOCKED_IN_ZONE_FIRE.replace("zone-{zone}\"",
                                                                        "zone-{zonee}\"")))
    assert "rules[0].when.all[1].device" in problem
    assert "{zonee}" in problem and "zone" in problem


def test_no_door_resolving_is_an_error_some_not_resolving_a_warning() -> None:
    (problem,) = problems(site_text({"door-1": None, "door-2": "2 east"}))
    assert "rules[0].when.all[1].device" in problem
    assert "names no configured device for any device" in problem
    assert "door-1" in problem and "no zone in its location" in problem
    text = site_text({"door-1": "1", "door-2": None})
    assert problems(text) == []
    (warning,) = warnings(text)
    assert warning[0] == "rules[0].when.all[1].device"
    assert "door-2" in warning[1] and "no zone" in warning[1]
    assert warnings(site_text(THREE)) == [], "referenced values in messages are no typo"


def test_a_resolved_device_without_the_point_is_an_error_naming_it() -> None:
    (problem,) = problems(site_text(THREE, LOCKED_IN_ZONE_FIRE.replace(
        "point: event, eq: FIRE", "point: events, eq: FIRE")))
    assert problem.startswith("rules[0].when.all[1].point")
    assert "FACP-1-zone-1" in problem and "'events'" in problem


def test_literal_panel_zones_are_checked_against_each_door() -> None:
    text = site_text({"door-1": "1", "door-4": "4"}).replace(PANEL, "".join(
        f"  - {{id: FACP-1-zone-{z}, driver: mqtt, kind: fire_zone, points: "
        f"[{{name: event, topic: fire/FACP-1/z{z}, type: string}}]}}\n" for z in "123"))
    assert problems(text) == []
    (warning,) = warnings(text)
    assert "door-4" in warning[1] and "'FACP-1-zone-4' is no configured device" in warning[1]


def test_a_silence_rule_through_a_reference_is_checked_against_the_panels_offline_policy(
        ) -> None:
    """``{device: ..., stale: 90s}`` judges the panel's silence, so the panel's ``offline``
    policy is what makes it meaningful: the warning names the panel, once per rule."""
    rule = """
  - id: zone-panel-silent
    kind: door
    when: {device: "FACP-1-zone-{zone}", stale: 90s}
    category: communication
    priority: P3
    message: {zh: x, en: x}
"""
    text = site_text(THREE, rule)
    (warning,) = offline_warnings(load_config_text(text))
    assert warning[0] == "devices[3]"
    assert "zone-panel-silent" in warning[1] and "FACP-1-zone-{zone}" in warning[1]
    never = text.replace("split_by: {zone: zone},", "split_by: {zone: zone}, offline: never,")
    (warning,) = offline_warnings(load_config_text(never))
    assert warning[0] == "devices[3].offline" and "never fires" in warning[1]
    declared = text.replace("split_by: {zone: zone},", "split_by: {zone: zone}, "
                                                       "offline: {after: 10m},")
    assert offline_warnings(load_config_text(declared)) == []


def propgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False, env={**os.environ})


def test_check_config_exits_2_only_when_no_door_resolves(tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(site_text({"door-1": "1", "door-2": None}))
    done = propgw("check-config", "-c", str(site_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: " in done.stderr and "door-2" in done.stderr
    assert propgw("check-config", "--strict", "-c", str(site_file)).returncode == 2
    site_file.write_text(site_text({"door-1": None, "door-2": None}))
    done = propgw("check-config", "-c", str(site_file))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "rules[0].when.all[1].device" in done.stderr


# --------------------------------------------------------------------------- a real gateway


GATEWAY = """
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {state}
brokers:
  devices: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
  platform: {{host: 127.0.0.1, port: {port}, reconnect: {{initial: 0.1, max: 0.5}}}}
upstream: {{broker: platform, topic_prefix: pm}}
devices:
{doors}
  - id: "FACP-1-zone-{{zone}}"
    name: "1号消防主机 {{zone}}防区"
    driver: mqtt
    broker: devices
    kind: fire_zone
    location: {{building: "1", zone: "{{zone}}"}}
    split_by: {{zone: zone}}
    offline: never
    points: [{{name: event, topic: fire/FACP-1/events, path: event, type: string}}]
rules:
  - id: locked-in-zone-fire
    kind: door
    when:
      all:
        - {{point: locked, eq: true}}
        - {{device: "FACP-1-zone-{{zone}}", point: event, eq: FIRE}}
    category: fire_alarm
    priority: P0
    message:
      zh: "{{device_name}} 在{{FACP-1-zone-{{zone}}:event}}时仍锁闭"
      en: "{{device_name}} locked during {{FACP-1-zone-{{zone}}:event}}"
"""
DOOR = """  - {{id: door-{z}, name: "{z}区疏散门", driver: mqtt, broker: devices, kind: door,
     location: {{building: "1", zone: "{z}"}},
     points: [{{name: locked, topic: acs/door-{z}/locked, type: bool}}]}}"""


def gateway_site(tmp_path: Path, port: int) -> GatewayConfig:
    doors = "\n".join(DOOR.format(z=z) for z in "123")
    return load_config_text(GATEWAY.format(state=tmp_path / "state", port=port, doors=doors))


@pytest.mark.mosquitto
async def test_zone_2_fire_on_a_split_panel_raises_exactly_door_2s_order(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    async with probed_gateway(gateway_site(tmp_path, mosquitto.port), mosquitto.port,
                              fake_clock) as (probe, orders):
        active, publish = probe.active, probe.publish

        for z in "123":
            await publish(f"acs/door-{z}/locked", "true", judged=1)
        await publish("fire/FACP-1/events", json.dumps({"zone": 2, "event": "NORMAL"}), judged=1)
        assert active() == set()
        # Zone 2 reports fire on the panel's one topic: door-2's alarm, no other door's.
        await publish("fire/FACP-1/events", json.dumps({"zone": 2, "event": "FIRE"}), judged=1)
        assert active() == {"locked-in-zone-fire@door-2"}
        await until(lambda: len(orders) >= 1, fake_clock)
        (order,) = orders
        assert order["alarm_id"] == "locked-in-zone-fire@door-2"
        assert order["alarm_active"] is True
        assert order["evidence"] == {"locked": True, "FACP-1-zone-2:event": "FIRE"}
        assert "2区疏散门 locked during FIRE" in json.dumps(order, ensure_ascii=False)
        # Zone 3's fire with door-3 unlocked first: still only door-2.
        await publish("acs/door-3/locked", "false", judged=1)
        await publish("fire/FACP-1/events", json.dumps({"zone": 3, "event": "FIRE"}), judged=1)
        assert active() == {"locked-in-zone-fire@door-2"}
        # Zone 2 back to normal: door-2's order clears upstream.
        await publish("fire/FACP-1/events", json.dumps({"zone": 2, "event": "NORMAL"}), judged=1)
        assert active() == set()
        await until(lambda: any(o["alarm_active"] is False for o in orders), fake_clock)
        assert {o["alarm_id"] for o in orders} == {"locked-in-zone-fire@door-2"}
