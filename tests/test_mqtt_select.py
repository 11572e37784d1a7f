"""Devices that share a topic, each taking the messages whose payload fields it ``select``s.

The selection rules and the config's checks are pure units; the driver runs against a real
mosquitto (helpers of tests/test_mqtt_driver.py), stale timers on a FakeClock.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from drivers.mqtt import Payload, PointDecoder, Selector, describe_subscriptions
from gateway.clock import FakeClock, SystemClock
from gateway.config import GatewayConfig, MqttDevice, load_config_text
from gateway.devices import DeviceDirectory
from gateway.errors import ConfigError
from gateway.model import Quality
from tests.gateway_support import drivers_subscribed, gateway_with_platform, until
from tests.support import Mosquitto
from tests.test_mqtt_driver import Sink, only_driver, publish, running, wait_until
from tests.test_mqtt_split import documented_example

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
    parses: list[bytes | bytearray | str] = []
    real = Payload._parse

    def counting(self: Payload) -> Any:
        parses.append(self.raw)
        return real(self)

    monkeypatch.setattr(Payload, "_parse", counting)  # whichever decoder it uses
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
     "devices[0].select (line 10): at most 8 entries, got 9"),
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


def test_check_config_says_which_messages_a_device_takes() -> None:
    config = load_config_text(SITE.replace("{zone: 3}", '{zone: 3, "event.test": false}'))
    assert describe_subscriptions(config) == [
        "mqtt FACP-1-Z3 via broker local: 1 point(s) on fire/FACP-1/events (QoS 1), only "
        "messages with zone = 3 and event.test = false"]


def test_the_documented_example_loads_and_selects_each_zone(tmp_path: Path) -> None:
    section, site, stdout = documented_example("Devices that share a topic: select", tmp_path)
    for zone in (3, 4):
        assert (f"mqtt FACP-1-Z{zone} via broker local: 1 point(s) on fire/FACP-1/events "
                f"(QoS 1), only messages with zone = {zone}") in stdout
    config = load_config_text(site.read_text("utf-8"))
    directory = DeviceDirectory(config.devices)
    z3, z4 = directory.get("FACP-1-Z3"), directory.get("FACP-1-Z4")
    assert z3 is not None and z4 is not None
    assert z3.name != z4.name and z3.location != z4.location
    chosen = {}
    for device in config.devices:
        assert isinstance(device, MqttDevice)
        selector = Selector.compile(device.select)
        assert selector is not None
        chosen[device.id] = [line for line in section.splitlines()
                             if line.startswith("{") and selector.selects(Payload(line.encode()))]
    assert [len(lines) for lines in chosen.values()] == [1, 1], chosen
    assert '"zone": 7' in section and "unselected" in section


# --------------------------------------------------------------------------- the driver

TOPIC = "sunny/fire/FACP-1/events"


def zone_device(zone: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"FACP-1-Z{zone}", "driver": "mqtt", "kind": "fire_zone",
            "select": {"zone": zone},
            "points": [{"name": "event", "topic": TOPIC, "path": "event", "type": "string"}],
            **extra}


def site(port: int, devices: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None,
         **extra: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "site": {"id": "sunny", "name": "阳光花园", "gateway_id": "gw1"},
        "brokers": {"local": {"host": "127.0.0.1", "port": port, "connect_timeout": 2,
                              "reconnect": {"initial": 0.05, "max": 0.2}}},
        "devices": devices, "rules": rules or [], **extra})


def fire_rule(device: str) -> dict[str, Any]:
    return {"id": f"fire-{device}", "devices": [device], "category": "fire_alarm",
            "priority": "P0", "when": {"point": "event", "eq": "FIRE"},
            "message": {"zh": "火警", "en": "fire"}}


@pytest.mark.mosquitto
async def test_literal_devices_on_one_topic_each_take_only_their_zone(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.mqtt")
    devices = [zone_device(3), zone_device(4), {
        **zone_device(5), "select": {"zone": 5, "test": False}}]
    driver = only_driver(site(mosquitto.port, devices), SystemClock())
    assert driver.subscriptions == ((TOPIC, 1),)
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      (TOPIC, '{"zone": 3, "event": "FIRE"}'),
                      (TOPIC, '{"zone": 7, "event": "FIRE"}'),  # a zone nobody configured
                      (TOPIC, '{"zone": "4", "event": "FAULT"}'),
                      (TOPIC, '{"zone": 3.0, "event": "NORMAL"}'),
                      (TOPIC, '{"zone": 5, "test": true, "event": "FIRE"}'),  # a test run
                      (TOPIC, "FIRE zone 3"),
                      (TOPIC, '{"zone": 5, "test": false, "event": "NORMAL"}'))
        await sink.wait_for(lambda r: r.device == "FACP-1-Z5")
        await wait_until(lambda: driver.health().counters["messages"] == 7)
    events = [(r.device, r.value) for r in sink.readings]
    assert events == [("FACP-1-Z3", "FIRE"), ("FACP-1-Z4", "FAULT"), ("FACP-1-Z3", "NORMAL"),
                      ("FACP-1-Z5", "NORMAL")]
    assert all(r.quality is Quality.GOOD for r in sink.readings)
    counters = driver.health().counters
    assert (counters["unselected"], counters["unmatched"], counters["malformed"],
            counters["bad_split"]) == (3, 0, 0, 0)
    assert driver.health().devices == {"FACP-1-Z3": "ok", "FACP-1-Z4": "ok",
                                       "FACP-1-Z5": "ok"}
    noisy = [r for r in caplog.records if r.name.startswith("drivers.mqtt")
             and r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]
    assert sum("no device selects the message on 'sunny/fire/FACP-1/events'" in r.getMessage()
               for r in caplog.records) == 3


@pytest.mark.mosquitto
async def test_a_split_device_with_select_makes_devices_only_of_the_kind_it_selects(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    doors = {"id": "door-{door}", "driver": "mqtt", "kind": "access_door",
             "split_by": {"door": "door"}, "select": {"kind": "door"},
             "points": [{"name": "open", "topic": "acs/events", "path": "open", "type": "bool"}]}
    driver = only_driver(site(mosquitto.port, [doors]), SystemClock())
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port,
                      ("acs/events", '{"kind": "window", "door": 6, "open": true}'),
                      ("acs/events", '{"kind": "alarm", "open": true}'),  # no door field
                      ("acs/events", '{"kind": "door", "door": 5, "open": true}'))
        await sink.wait_for(lambda r: r.device == "door-5")
        await wait_until(lambda: driver.health().counters["messages"] == 3)
    assert [(r.device, r.value) for r in sink.readings] == [("door-5", True)]
    health = driver.health()
    assert health.devices == {"door-5": "ok"}, "a message not selected makes no device"
    assert (health.counters["unselected"], health.counters["bad_split"]) == (2, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.mosquitto
async def test_a_message_not_selected_does_not_keep_the_device_alive(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    devices = [zone_device(3, stale_after="30s"), zone_device(4)]
    driver = only_driver(site(mosquitto.port, devices), fake_clock)
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port, (TOPIC, '{"zone": 3, "event": "NORMAL"}'))
        await sink.wait_for(lambda r: r.device == "FACP-1-Z3")
        await fake_clock.advance(20)
        # Zone 4 and an unconfigured zone keep talking; zone 3 says nothing.
        await publish(mosquitto.port, (TOPIC, '{"zone": 4, "event": "NORMAL"}'),
                      (TOPIC, '{"zone": 9, "event": "NORMAL"}'))
        await sink.wait_for(lambda r: r.device == "FACP-1-Z4")
        await wait_until(lambda: driver.health().counters["unselected"] == 1)
        await fake_clock.advance(9.9)
        assert driver.health().devices["FACP-1-Z3"] == "ok"
        await fake_clock.advance(0.1)
        lost = await sink.wait_for(lambda r: r.quality is Quality.COMM_LOSS)
        assert [(r.device, r.error) for r in lost] == [("FACP-1-Z3", "no message for 30 s")]
        assert driver.health().devices == {"FACP-1-Z3": "comm-loss", "FACP-1-Z4": "ok"}


@pytest.mark.mosquitto
async def test_a_selected_life_safety_zone_travels_on_its_lane_and_is_counted_once(
        mosquitto: Mosquitto, fake_clock: FakeClock) -> None:
    """Zone 3 is read by a P0 rule, zone 4 by none: the topic is subscribed on both
    connections, each message arrives twice, and each is read (or counted) once."""
    config = site(mosquitto.port, [zone_device(3), zone_device(4)], [fire_rule("FACP-1-Z3")])
    driver = only_driver(config, fake_clock)
    assert [lane.name for lane in driver.lanes] == ["telemetry", "life-safety"]
    sink = Sink()
    async with running(driver, sink, subscribed=2):
        await publish(mosquitto.port, (TOPIC, '{"zone": 3, "event": "FIRE"}'),
                      (TOPIC, '{"zone": 4, "event": "FAULT"}'),
                      (TOPIC, '{"zone": 7, "event": "FIRE"}'))
        await sink.wait_for(lambda r: True, count=2)
        await wait_until(lambda: driver.health().counters["messages"] == 6)
    assert [(r.device, r.value) for r in sink.urgent] == [("FACP-1-Z3", "FIRE")]
    assert [(r.device, r.value) for r in sink.readings if r not in sink.urgent] == [
        ("FACP-1-Z4", "FAULT")]
    counters = driver.health().counters
    assert (counters["unselected"], counters["unmatched"]) == (1, 0)


@pytest.mark.mosquitto
async def test_zones_selected_from_one_topic_raise_orders_with_their_own_name_and_place(
        mosquitto: Mosquitto, tmp_path: Path, fake_clock: FakeClock) -> None:
    """End to end: a real gateway, its work orders received by a platform on the broker."""
    devices = [zone_device(3, name="B2 5F east stairs",
                           location={"building": "B2", "floor": "5", "room": "east stairs"}),
               zone_device(4, name="basement pump room",
                           location={"building": "B2", "floor": "B1", "room": "pump room"})]
    rule = {**fire_rule("FACP-1-Z3"), "id": "zone-fire", "devices": ["FACP-1-Z3", "FACP-1-Z4"],
            "message": {"zh": "{device_name} 火警", "en": "{device_name} fire"}}
    config = site(mosquitto.port, devices, [rule], state_dir=str(tmp_path),
                  upstream={"broker": "local", "topic_prefix": "pm"})
    async with gateway_with_platform(config, mosquitto.port, fake_clock,
                                     topic="pm/sunny/work-orders") as (gateway, orders):
        driver = gateway.drivers[0]
        await until(lambda: drivers_subscribed(gateway), fake_clock)
        # Zone 7 first: if it fed either zone, that zone's order would come first.
        await publish(mosquitto.port, *[(TOPIC, json.dumps({"zone": zone, "event": "FIRE"}))
                                        for zone in (7, 4, 3)])
        await until(lambda: len(orders) >= 2 and driver.health().counters["messages"] == 3,
                    fake_clock)
        active = {a.device for a in gateway.engine.active()}
        health = driver.health()
    assert active == {"FACP-1-Z3", "FACP-1-Z4"}
    assert (health.counters["unselected"], health.counters["readings"]) == (1, 2)
    by_device = {o["location"]["device"]: o for o in orders}
    assert sorted(by_device) == ["FACP-1-Z3", "FACP-1-Z4"] and len(orders) == 2
    assert by_device["FACP-1-Z3"]["location"] == {
        "site": "sunny", "building": "B2", "floor": "5", "zone": None, "room": "east stairs",
        "device": "FACP-1-Z3", "device_name": "B2 5F east stairs"}
    assert by_device["FACP-1-Z4"]["location"]["device_name"] == "basement pump room"
    assert by_device["FACP-1-Z4"]["location"]["room"] == "pump room"
    assert by_device["FACP-1-Z3"]["description"]["en"] == "B2 5F east stairs fire"
