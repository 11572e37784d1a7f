"""A device split by a payload field: id capture from the payload, and the config's checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.mqtt import DeviceIds, IdError, Payload, TopicPattern
from gateway.config import MqttDevice, lint, load_config_text
from gateway.devices import DeviceDirectory
from gateway.errors import ConfigError

# --------------------------------------------------------------------------- capture


def ids_of(template: str, topic: str, topic_template: str, payload: str,
           split_by: dict[str, str] | None = None) -> str:
    values = TopicPattern.compile(topic_template).match(topic)
    assert values is not None
    return DeviceIds.compile(template, split_by).device_id(values, Payload(payload.encode()))


@pytest.mark.parametrize(("payload", "expected"), [
    ('{"zone": 3, "event": "FIRE"}', "panel-zone-3"),
    ('{"zone": "3", "event": "FIRE"}', "panel-zone-3"),
    ('{"zone": 3.0}', "panel-zone-3"),  # some panels send every number as a float
    ('{"zone": "B1-07"}', "panel-zone-B1-07"),
])
def test_a_payload_field_fills_the_device_id(payload: str, expected: str) -> None:
    assert ids_of("panel-zone-{zone}", "fire/p1/events", "fire/p1/events", payload,
                  {"zone": "zone"}) == expected


def test_topic_levels_and_payload_fields_together_and_nested_paths() -> None:
    # A door controller per topic level, its door number deep in the payload.
    assert ids_of("{ctl}-door-{door}", "acs/C2/event", "acs/{ctl}/event",
                  '{"data": {"doors": [{"no": 12}]}}',
                  {"door": "data.doors[0].no"}) == "C2-door-12"


def test_without_split_by_topic_capture_is_unchanged() -> None:
    assert ids_of("door-{door}", "acs/7/state", "acs/{door}/state", "plain text") == "door-7"
    literal = DeviceIds.compile("meter-1")
    assert not literal.templated
    assert literal.device_id({}, Payload(b"not json")) == "meter-1"


@pytest.mark.parametrize(("payload", "reason"), [
    ('{"event": "FIRE"}', "field 'zone' is missing"),
    ("FIRE zone 3", "payload is not JSON"),
    ('{"zone": null}', "field 'zone' is null, not text or a whole number"),
    ('{"zone": true}', "field 'zone' is true, not text or a whole number"),
    ('{"zone": 3.5}', "field 'zone' is 3.5, not text or a whole number"),
    ('{"zone": [3]}', "field 'zone' is a list, not text or a whole number"),
    ('{"zone": "zone 3"}', "cannot be part of a device id"),
    ('{"zone": ""}', "cannot be part of a device id"),
    ('{"zone": "a/b"}', "cannot be part of a device id"),
    ('{"zone": "' + "9" * 70 + '"}', "cannot be part of a device id"),
])
def test_a_message_that_names_no_valid_device_is_refused_with_the_reason(
        payload: str, reason: str) -> None:
    with pytest.raises(IdError, match="split_by zone") as caught:
        ids_of("panel-zone-{zone}", "fire/p1/events", "fire/p1/events", payload,
               {"zone": "zone"})
    assert caught.value.from_payload
    assert reason in str(caught.value)


def test_a_long_id_made_of_valid_pieces_is_refused_and_blames_the_right_source() -> None:
    with pytest.raises(IdError, match="payload gives device id") as caught:
        ids_of("p-{zone}", "f/e", "f/e", '{"zone": "' + "9" * 64 + '"}', {"zone": "zone"})
    assert caught.value.from_payload
    # A bad topic level is the topic's fault even when a payload field is good.
    with pytest.raises(IdError, match="topic gives device id") as caught:
        ids_of("{ctl}-door-{door}", "acs/bad id/event", "acs/{ctl}/event", '{"door": 1}',
               {"door": "door"})
    assert not caught.value.from_payload


def test_the_payload_is_parsed_once_for_the_id_and_every_point() -> None:
    payload = Payload(b'{"zone": 4, "event": "FIRE"}')
    ids = DeviceIds.compile("z-{zone}", {"zone": "zone"})
    assert ids.device_id({}, payload) == "z-4"
    first = payload.document()
    assert ids.device_id({}, payload) == "z-4"
    assert payload.document() is first


def test_ids_met_before_are_remembered_within_a_bound_and_bad_ones_never() -> None:
    ids = DeviceIds.compile("z-{zone}", {"zone": "zone"})

    def of(zone: str) -> str:
        return ids.device_id({}, Payload(f'{{"zone": "{zone}"}}'.encode()))

    assert [of("1"), of("1"), of("2")] == ["z-1", "z-1", "z-2"]
    for _ in range(2):  # a refused value is refused every time, never remembered
        with pytest.raises(IdError, match="cannot be part of a device id"):
            of("a b")
    # A panel sending random zones cannot make the gateway remember without bound.
    assert [of(str(n)) for n in range(5000)][-1] == "z-4999"
    assert len(ids._known) == 4096


def test_captured_devices_get_their_own_name_and_location() -> None:
    config = load_config_text(SITE)
    zone = DeviceDirectory(config.devices).get("panel-zone-3")
    assert zone is not None
    assert (zone.name, zone.location.building, zone.location.zone) == (
        "1号消防主机 3防区", "2", "3")


# --------------------------------------------------------------------------- config

SITE = """
site: {id: s, name: s, gateway_id: g}
brokers: {local: {host: 127.0.0.1}}
devices:
  - id: "panel-zone-{zone}"
    name: "1号消防主机 {zone}防区"
    driver: mqtt
    kind: fire_zone
    location: {building: "2", zone: "{zone}"}
    split_by: {zone: zone}
    points:
      - {name: event, topic: "fire/panel1/events", path: event, type: string}
"""


def test_a_split_device_loads() -> None:
    device = load_config_text(SITE).devices[0]
    assert isinstance(device, MqttDevice)
    assert device.split_by == {"zone": "zone"}


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("split_by: {zone: zone}", "split_by: {zon: zone}",
     "devices[0] (line 5): split_by.zon: the device id 'panel-zone-{zone}' has no {zon}"),
    ("split_by: {zone: zone}", 'split_by: {zone: "a..b"}',
     "devices[0].split_by (line 10): zone: bad field path 'a..b'"),
    ("split_by: {zone: zone}", 'split_by: {"1z": zone}',
     "devices[0].split_by (line 10): '1z' is not a placeholder name"),
    ("split_by: {zone: zone}", "split_by: {}",
     "topic 'fire/panel1/events' lacks placeholder(s) {zone} used in the device id (a topic "
     "level such as 'site/{zone}/state', or a payload field with 'split_by: {zone: FIELD}')"),
    ("path: event, ", "", "point 'event' has no 'path', but split_by reads the device"),
    ("fire/panel1/events", "fire/{zone}/events",
     "{zone} is taken from the topic 'fire/{zone}/events' and from the payload"),
])
def test_split_mistakes_are_explained_with_their_key(old: str, new: str, expected: str) -> None:
    assert old in SITE
    with pytest.raises(ConfigError) as caught:
        load_config_text(SITE.replace(old, new))
    assert expected in str(caught.value)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("{zone}防区", "{zonee}防区",
     ("devices[0].name", "'1号消防主机 {zonee}防区': {zonee} is not a placeholder of the device "
                         "id 'panel-zone-{zone}' (it has {zone}); it would be shown as written")),
    ('zone: "{zone}"}', 'zone: "{area}"}',
     ("devices[0].location.zone", "'{area}': {area} is not a placeholder of the device id")),
])
def test_a_name_or_location_placeholder_the_id_lacks_is_a_warning(
        old: str, new: str, expected: tuple[str, str]) -> None:
    config = load_config_text(SITE.replace(old, new))  # a warning: the site still runs
    key, message = expected
    found = [m for k, m in lint(config) if k == key]
    assert len(found) == 1 and found[0].startswith(message), found
    assert not [k for k, _ in lint(load_config_text(SITE)) if k.startswith("devices")]


def test_check_config_exits_2_on_a_bad_split_and_shows_a_good_one(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(SITE, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(SITE.replace("split_by: {zone: zone}", "split_by: {zon: zone}"),
                   encoding="utf-8")

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(path)],
                              capture_output=True, text=True, timeout=30, check=False)

    ok = check(good)
    assert ok.returncode == 0, ok.stderr
    assert ("mqtt panel-zone-{zone} via broker local: 1 point(s) on fire/panel1/events "
            "(QoS 1), {zone} from payload field zone") in ok.stdout
    refused = check(bad)
    assert refused.returncode == 2
    assert "split_by.zon" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr


def documented_example(heading: str, tmp_path: Path) -> tuple[str, Path, str]:
    """The section of docs/configuration.md under ``heading``, its first YAML example as a
    site file, and what ``check-config`` (which must accept it) prints about that site."""
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text("utf-8")
    section = doc.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: s, name: s, gateway_id: g}\n"
                    "brokers: {local: {host: 127.0.0.1}}\n" + example, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(site)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return section, site, done.stdout


def test_the_documented_fire_panel_example_loads_and_splits(tmp_path: Path) -> None:
    section, site, stdout = documented_example("Devices split by a payload field", tmp_path)
    assert ("mqtt FACP-1-zone-{zone} via broker local: 2 point(s) on fire/FACP-1/events "
            "(QoS 1), {zone} from payload field zone") in stdout
    assert "zone-fire: P0 fire_alarm" in stdout
    zone = DeviceDirectory(load_config_text(site.read_text("utf-8")).devices).get(
        "FACP-1-zone-3")
    assert zone is not None and zone.name == "1号消防主机 3防区"
    device = load_config_text(site.read_text("utf-8")).devices[0]
    assert isinstance(device, MqttDevice)
    ids = DeviceIds.compile(device.id, device.split_by)
    for line, expected in [('{"zone": 3, "event": "FIRE", "detector": 12, "ts": 1767225600}',
                            "FACP-1-zone-3"),
                           ('{"zone": 1, "event": "NORMAL", "detector": 0, "ts": 1767225660}',
                            "FACP-1-zone-1")]:
        assert line in section
        assert ids.device_id({}, Payload(line.encode())) == expected
