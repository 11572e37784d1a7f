"""The topic → routes table of the MQTT driver: what a topic matched, remembered per topic.

Pure units on :class:`drivers.mqtt._routing.RouteTable` and the device ids that read its
shared captures; one driver test against a real mosquitto sends the same topics again and
again (cache hits) with payloads that must each go where their ``split_by`` and ``select`` say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from drivers.mqtt import Payload
from drivers.mqtt._ids import DeviceIds
from drivers.mqtt._routing import CACHED_TOPICS, MAX_CACHED_TOPIC, RouteTable
from drivers.mqtt._topics import TopicPattern
from gateway.clock import SystemClock
from gateway.config import GatewayConfig
from tests.support import Mosquitto
from tests.test_mqtt_driver import Sink, only_driver, publish, running, wait_until


@dataclass(frozen=True)
class Route:
    name: str
    pattern: TopicPattern


def table(*topics: str, size: int = CACHED_TOPICS) -> RouteTable[Route]:
    return RouteTable([Route(t, TopicPattern.compile(t)) for t in topics], size=size)


def names(found: Any) -> list[tuple[str, dict[str, str]]]:
    return [(route.name, dict(values)) for route, values in found]


# --------------------------------------------------------------------------- the table


def test_a_topic_matches_every_route_it_fits_in_order_each_with_its_own_captures() -> None:
    routes = table("site/{building}/panel/{zone}", "site/+/panel/#", "site/B2/panel/{zone}",
                   "site/B3/panel/{zone}")
    expected = [("site/{building}/panel/{zone}", {"building": "B2", "zone": "7"}),
                ("site/+/panel/#", {}),
                ("site/B2/panel/{zone}", {"zone": "7"})]
    assert names(routes.match("site/B2/panel/7")) == expected
    assert names(routes.match("site/B2/panel/7")) == expected, "the same from the table"
    assert names(routes.match("site/B3/panel/1"))[2] == ("site/B3/panel/{zone}", {"zone": "1"})
    assert routes.match("elsewhere/x") == ()
    assert routes.cached == 3, "a topic that matches nothing is remembered too"


def test_a_topic_seen_before_is_looked_up_not_matched_again() -> None:
    routes = table("a/{x}")
    first = routes.match("a/1")
    assert routes.match("a/1") is first
    assert routes.match("a/2") is not first


def test_the_table_never_holds_more_than_its_size_and_forgets_the_oldest_first() -> None:
    routes = table("t/{n}", size=3)
    kept = {n: routes.match(f"t/{n}") for n in range(3)}
    assert routes.cached == 3
    for n in range(3, 50):
        routes.match(f"t/{n}")
        assert routes.cached == 3
    assert routes.match("t/0") is not kept[0], "forgotten, matched afresh"
    assert names(routes.match("t/0")) == [("t/{n}", {"n": "0"})]
    latest = routes.match("t/49")
    assert routes.match("t/49") is latest, "the newest stays"


def test_the_default_size_is_a_bound_on_topics_from_the_network() -> None:
    routes = table("dev/#")
    for n in range(CACHED_TOPICS + 500):
        routes.match(f"dev/{n}")
    assert routes.cached == CACHED_TOPICS


def test_long_topics_are_matched_but_never_remembered() -> None:
    routes = table("d/{id}/#")
    long = "d/x/" + "y" * MAX_CACHED_TOPIC
    assert names(routes.match(long)) == [("d/{id}/#", {"id": "x"})]
    assert routes.cached == 0
    assert routes.match(long) is not routes.match(long)


def test_a_table_needs_room_for_one_topic() -> None:
    with pytest.raises(ValueError, match="size must be > 0"):
        table("a", size=0)


# --------------------------------------------------------------------------- shared captures


def test_split_by_leaves_the_shared_topic_captures_as_they_were() -> None:
    """The captures of a topic are shared by every message on it: a ``split_by`` field of
    one message must not leak into the next one's device id."""
    ids = DeviceIds.compile("{panel}-zone-{zone}", {"zone": "zone"})
    captured = TopicPattern.compile("site/{panel}/events").match("site/FACP-1/events")
    assert captured is not None
    assert ids.device_id(captured, Payload(b'{"zone": 3}')) == "FACP-1-zone-3"
    assert captured == {"panel": "FACP-1"}
    assert ids.device_id(captured, Payload(b'{"zone": 4}')) == "FACP-1-zone-4"
    with pytest.raises(ValueError, match="split_by zone"):
        ids.device_id(captured, Payload(b'{"other": 4}'))
    assert captured == {"panel": "FACP-1"}


# --------------------------------------------------------------------------- in the driver


def site(port: int, devices: list[dict[str, Any]]) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "site": {"id": "sunny", "name": "阳光花园", "gateway_id": "gw1"},
        "brokers": {"local": {"host": "127.0.0.1", "port": port, "connect_timeout": 2,
                              "reconnect": {"initial": 0.05, "max": 0.2}}},
        "devices": devices})


@pytest.mark.mosquitto
async def test_repeated_topics_go_where_their_payload_and_topic_say(
        mosquitto: Mosquitto) -> None:
    """Every topic below comes several times (from the table after its first message): each
    message still feeds the device its own topic levels, ``split_by`` and ``select`` name."""
    zones = {"id": "{panel}-z{zone}", "driver": "mqtt", "kind": "fire_zone",
             "split_by": {"zone": "zone"}, "select": {"kind": "zone"},
             "points": [{"name": "event", "topic": "fire/{panel}/events", "path": "event",
                         "type": "string"}]}
    loop = {"id": "loop-1", "driver": "mqtt", "kind": "fire_panel", "select": {"kind": "loop"},
            "points": [{"name": "event", "topic": "fire/P1/events", "path": "event",
                        "type": "string"}]}
    driver = only_driver(site(mosquitto.port, [zones, loop]), SystemClock())
    sent: list[tuple[str, str]] = []
    expected: list[tuple[str, str]] = []
    for n in range(4):
        for panel in ("P1", "P2"):
            zone = n % 2 + 1
            sent.append((f"fire/{panel}/events",
                         f'{{"kind": "zone", "zone": {zone}, "event": "e{n}"}}'))
            expected.append((f"{panel}-z{zone}", f"e{n}"))
        sent.append(("fire/P1/events", f'{{"kind": "loop", "event": "l{n}"}}'))
        expected.append(("loop-1", f"l{n}"))
        sent.append(("fire/P2/events", '{"kind": "loop", "event": "nobody"}'))
    sink = Sink()
    async with running(driver, sink):
        await publish(mosquitto.port, *sent)
        await wait_until(lambda: driver.health().counters["messages"] == len(sent))
    assert [(r.device, r.value) for r in sink.readings] == expected
    counters = driver.health().counters
    assert (counters["unselected"], counters["bad_split"], counters["unmatched"]) == (4, 0, 0)
    assert driver._links[0].routes.cached == 2
