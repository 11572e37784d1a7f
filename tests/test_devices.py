"""Templated device ids resolve to their config, with captured values in name and location."""

from __future__ import annotations

from gateway.config import load_config_text
from gateway.devices import DeviceDirectory
from gateway.i18n import format_location

CONFIG = """
site: {id: s, name: s, gateway_id: g}
brokers: {local: {host: 127.0.0.1}}
devices:
  - {id: "{panel}", driver: mqtt, kind: fire_panel, points: [{name: x, topic: "fire/{panel}/c"}]}
  - id: "{panel}-zone-{zone}"
    name: "{panel} 防区{zone}"
    driver: mqtt
    kind: fire_zone
    location: {building: "2", zone: "{zone}"}
    points: [{name: fire, topic: "fire/{panel}/zone/{zone}", path: fire}]
  - {id: E1, driver: modbus-tcp, host: h, points: [{name: x, address: 0}]}
"""


def test_templated_ids_fill_name_and_location() -> None:
    directory = DeviceDirectory(load_config_text(CONFIG).devices)
    zone = directory.get("FACP-1-zone-3")
    assert zone is not None
    assert (zone.id, zone.name, zone.location.zone, zone.location.building) == (
        "FACP-1-zone-3", "FACP-1 防区3", "3", "2")
    assert format_location(zone.location, "zh-CN") == "2号楼 3区"
    assert directory.get("E1") is not None
    panel = directory.get("FACP-1")
    assert panel is not None and panel.kind == "fire_panel"
    assert directory.get("no/such") is None  # ids never contain a topic separator
