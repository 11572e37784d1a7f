"""Devices that share a topic, each taking the messages whose payload fields it ``select``s.

The selection rules and the config's checks are pure units; the driver runs against a real
mosquitto (helpers of tests/test_mqtt_driver.py), stale timers on a FakeClock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from drivers.mqtt import Payload, PointDecoder, Selector
from gateway.config import MqttDevice, load_config_text
from gateway.errors import ConfigError

# --------------------------------------------------------------------------- selection


def selects(select: dict[str, Any], payload: str | bytes) -> bool:
    selector = Selector.compile(select)
    assert selector is not None
    raw = payload.encode() if isinstance(payload, str) else payload
    return selector.selects(Payload(raw))


@pytest.mark.parametrize(("payload", "expected"), [
    ('{"zone": 3, "event": "FIRE"}', True),
    ('{"zone": "3"}', True),
    ('{"zone": 3.0}', True),  # panels that send every number as a float
    ('{"zone": 4}', False),
    ('{"zone": "3.0"}', False),  # text is compared as it is
    ('{"zone": " 3"}', False),
    ('{"zone": 3.5}', False),
    ('{"zone": true}', False),
    ('{"zone": null}', False),
    ('{"zone": [3]}', False),
    ('{"zone": {"no": 3}}', False),
    ('{"event": "FIRE"}', False),
    ('[3]', False),
    ("zone 3", False),  # not JSON
    (b"\xff\xfe", False),  # not even text
])
def test_a_field_equals_a_whole_number_as_split_by_reads_ids(payload: str | bytes,
                                                            expected: bool) -> None:
    assert selects({"zone": 3}, payload) is expected
    assert selects({"zone": "3"}, payload) is expected, "3 and '3' in the config are equal"


@pytest.mark.parametrize(("wanted", "payload", "expected"), [
    (True, '{"test": true}', True),
    (True, '{"test": false}', False),
    (False, '{"test": false}', True),
    (True, '{"test": 1}', False),
    (False, '{"test": 0}', False),
    (True, '{"test": "true"}', False),
    (False, '{"test": null}', False),
    (False, "{}", False),
])
def test_a_boolean_equals_only_a_boolean(wanted: bool, payload: str, expected: bool) -> None:
    assert selects({"test": wanted}, payload) is expected


def test_every_field_must_equal_and_paths_reach_into_the_payload() -> None:
    select: dict[str, str | int | bool] = {"event.zone_no": 3, "zones[0].id": "B2",
                                           "kind": "fire"}
    good = {"event": {"zone_no": 3}, "zones": [{"id": "B2"}], "kind": "fire"}
    assert selects(select, json.dumps(good))
    for key, value in [("kind", "fault"), ("zones", []), ("event", {"zone_no": 4})]:
        assert not selects(select, json.dumps({**good, key: value})), key
    assert Selector.compile({}) is None
    assert Selector.compile(select).describe() == (  # type: ignore[union-attr]
        "event.zone_no = 3 and zones[0].id = B2 and kind = fire")
    assert Selector.compile({"test": False}).describe() == "test = false"  # type: ignore[union-attr]


def test_the_payload_is_parsed_once_for_every_selector_and_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[str] = []
    real = json.loads

    def counting(text: str, **kwargs: Any) -> Any:
        parses.append(text)
        return real(text, **kwargs)

    monkeypatch.setattr(json, "loads", counting)  # as the decoder calls it
    point = MqttDevice.model_validate({
        "id": "z", "driver": "mqtt",
        "points": [{"name": "event", "topic": "t", "path": "event", "type": "string"}]}).points[0]
    decoder = PointDecoder(point)
    payload = Payload(b'{"zone": 3, "event": "FIRE"}')
    zone3, zone4 = Selector.compile({"zone": 3}), Selector.compile({"zone": 4})
    assert zone3 is not None and zone4 is not None
    assert (zone4.selects(payload), zone3.selects(payload)) == (False, True)
    assert decoder.decode(payload, device="z").value == "FIRE"
    assert len(parses) == 1
    # A payload that is not JSON is found so once, not once per device on the topic.
    garbage = Payload(b"FIRE zone 3")
    assert not zone3.selects(garbage) and not zone4.selects(garbage)
    assert len(parses) == 2


# --------------------------------------------------------------------------- config

SITE = """
site: {id: s, name: s, gateway_id: g}
brokers: {local: {host: 127.0.0.1}}
devices:
  - id: FACP-1-Z3
    name: B2 5F east stairs
    driver: mqtt
    kind: fire_zone
    location: {building: B2, floor: "5", room: east stairs}
    select: {zone: 3}
    points:
      - {name: event, topic: "fire/FACP-1/events", path: event, type: string}
"""


def test_a_selecting_device_loads() -> None:
    device = load_config_text(SITE.replace("{zone: 3}", "{zone: 3.0, test: false}")).devices[0]
    assert isinstance(device, MqttDevice)
    assert device.select == {"zone": 3, "test": False}
    assert type(device.select["zone"]) is int


@pytest.mark.parametrize(("new", "expected"), [
    ('select: {"a..b": 3}',
     "devices[0].select (line 10): a..b: bad field path 'a..b': empty name at char 2 (a field "
     "of the JSON payload, e.g. 'zone' or 'event.zone_no')"),
    ("select: {zone: 3.5}",
     "devices[0].select (line 10): zone: the value is 3.5, but a field can only be compared "
     "with text, a whole number or true/false, e.g. 'select: {zone: 3}'"),
    ("select: {zone: null}", "zone: the value is null, but a field can only be compared"),
    ("select: {zone: [3, 4]}", "zone: the value is a list, but a field can only be compared"),
    ("select: {zone: {no: 3}}", "zone: the value is a mapping, but a field can only be"),
    ("select: {" + ", ".join(f"f{n}: {n}" for n in range(9)) + "}",
     "devices[0].select (line 10): dictionary should have at most 8 items"),
    ("select: [zone, 3]", "devices[0].select (line 10): input should be a valid dictionary (found: list)"),
])
def test_select_mistakes_are_explained_with_their_key(new: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(SITE.replace("select: {zone: 3}", new))
    assert expected in str(caught.value)


def test_every_point_of_a_selecting_device_needs_a_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(SITE.replace("path: event, ", ""))
    assert ("devices[0] (line 5): point 'event' has no 'path', but select chooses messages by "
            "the message's JSON payload: give the field the point reads, e.g. 'path: event'"
            ) in str(caught.value)
