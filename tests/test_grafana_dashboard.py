"""The Grafana dashboard that ships in docs/grafana/ loads, queries only what propgw writes to
InfluxDB (measurement ``reading``, its tags and fields) and only point names that exist: the
bundled meter profiles' points and the accounting's interval points. Its provisioning examples
are valid YAML that points Grafana at it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from gateway.config import DEFAULT_COUNTERS

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "docs" / "grafana"
PROFILES = ["eastron-sdm630", "chint-dtsu666", "water-meter-modbus"]
TAGS = {"site", "building", "floor", "device", "point", "kind"}
FIELDS = {"value", "text", "quality"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "propgw-dashboard.json").read_text("utf-8"))
    return data


def known_points() -> set[str]:
    names = {f"{c}_{p}" for c in DEFAULT_COUNTERS for p in ("hour", "day")}
    for name in PROFILES:
        profile = yaml.safe_load((REPO / "config" / "profiles" / f"{name}.yaml").read_text())
        names |= {p["name"] for p in profile["points"]}
    return names


def queries() -> list[str]:
    data = dashboard()
    found = [t["query"] for p in data["panels"] for t in p.get("targets", [])]
    found += [v["query"] for v in data["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_loads_and_every_panel_queries_the_chosen_influxdb() -> None:
    data = dashboard()
    assert data["uid"] == "propgw-energy" and data["title"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "influxdb"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [p for p in data["panels"] if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"] is True and target["query"].startswith("SELECT ")
            assert "$timeFilter" in target["query"], panel["title"]
            assert 'WHERE "site" =~ /^$site$/' in target["query"], panel["title"]
    titles = " ".join(p["title"] for p in data["panels"])
    for topic in ("Electricity", "Water", "Device health", "per building", "per hour",
                  "per day"):
        assert topic in titles


def test_queries_use_only_the_measurement_tags_and_fields_propgw_writes() -> None:
    for query in queries():
        assert re.findall(r'FROM "([^"]+)"', query) == ["reading"], query
        quoted = set(re.findall(r'"([a-z_]+)"', query)) - {"reading"}
        aliases = set(re.findall(r'AS "([a-z_]+)"', query))
        assert quoted - aliases <= TAGS | FIELDS, (query, quoted - TAGS - FIELDS)


def test_every_point_a_query_names_exists() -> None:
    points = known_points()
    named: list[str] = []
    for query in queries():
        named += re.findall(r""""point" = '([^']+)'""", query)
        for pattern in re.findall(r'"point" =~ /([^/]+)/', query):
            hits = {p for p in points if re.fullmatch(pattern.strip("^$"), p)}
            assert hits, f"{pattern} matches no point: {query}"
            named += sorted(hits)
    assert set(named) - points == set()
    # Energy, water and the building totals are all on the board.
    assert {"import_kwh_hour", "import_kwh_day", "total_volume_hour", "total_volume_day",
            "power_total", "flow_rate", "voltage_l1"} <= set(named)


def test_the_provisioning_examples_load_the_dashboard_from_a_folder() -> None:
    sources = yaml.safe_load((GRAFANA / "datasource.yaml").read_text("utf-8"))
    source = sources["datasources"][0]
    assert source["type"] == "influxdb" and source["jsonData"]["dbName"]
    providers = yaml.safe_load((GRAFANA / "dashboards.yaml").read_text("utf-8"))
    provider = providers["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
