"""Every query of the shipped Grafana dashboard runs on a real InfluxDB engine (Debian's
``influxdb`` 1.6.7, tests/influx_support.py: a free loopback port, a throw-away data dir) against
readings shaped as propgw writes them, and returns data: the InfluxQL is valid, the tags and
fields it filters on are the right kind (tag or field), and the point names match."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.influx_support import InfluxD, influxd_binary

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(influxd_binary() is None,
                                reason="influxd missing: scripts/setup.sh --test installs it")


class Influx:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, path: str, params: dict[str, str], body: bytes | None = None) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if text else None


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influx]:
    server = InfluxD(tmp_path / "influxd")
    server.start()
    try:
        server.create_db("propgw")
        yield Influx(server.url)
    finally:
        server.stop()


def line(device: str, point: str, ts: float, *, value: float | None, quality: str = "good",
         building: str | None = "A", kind: str | None = "energy_meter") -> str:
    tags = {"site": "s1", "device": device, "point": point,
            **({"building": building} if building else {}), **({"kind": kind} if kind else {})}
    tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    fields = [f'quality="{quality}"'] + ([f"value={value}"] if value is not None else [])
    return f"reading,{tag_text} {','.join(fields)} {int(ts * 1e9)}"


def sample(now: float) -> str:
    hour = 3600.0
    start = now - now % hour - 48 * hour
    lines = []
    for i in range(48):
        t = start + i * hour
        for dev, kind in (("M1", "energy_meter"), ("W1", "water_meter")):
            counter = "import_kwh" if dev == "M1" else "total_volume"
            lines.append(line(dev, counter, t, value=100.0 + i, kind=kind))
            lines.append(line(dev, f"{counter}_hour", t, value=1.0, kind=kind))
            lines.append(line("building.A", f"{counter}_hour", t, value=1.0, building=None,
                              kind=None))
        lines.append(line("M1", "export_kwh_hour", t, value=0.0))
        for point, value in (("power_total", 2000.0), ("voltage_l1", 220.1),
                             ("voltage_l2", 221.0), ("voltage_l3", 219.0)):
            lines.append(line("M1", point, t, value=value))
        lines.append(line("W1", "flow_rate", t, value=0.5, kind="water_meter"))
    day = start - start % 86400
    for dev in ("M1", "building.A"):
        lines.append(line(dev, "import_kwh_day", day + 86400, value=24.0,
                          building=None if dev.startswith("building") else "A"))
        lines.append(line(dev.replace("M1", "W1"), "total_volume_day", day + 86400, value=12.0,
                          building=None if dev.startswith("building") else "A"))
    lines.append(line("M1", "power_total", start + 5 * hour + 60, value=None,
                      quality="comm-loss"))
    return "\n".join(lines)


def expand(query: str) -> str:
    """The query as Grafana sends it: the time range, site, every meter, an interval."""
    return (query.replace("$timeFilter", "time > now() - 7d").replace("$site", "s1")
            .replace("$meter", ".*").replace("$__interval", "1h"))


def test_every_dashboard_query_runs_and_finds_data(influx: Influx) -> None:
    influx.call("/write", {"db": "propgw", "precision": "ns"},
                sample(time.time()).encode())
    dashboard = json.loads((REPO / "docs" / "grafana" / "propgw-dashboard.json").read_text())
    checked = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            answer = influx.call("/query", {"db": "propgw", "q": expand(target["query"])})
            result = answer["results"][0]
            assert "error" not in result, (panel["title"], result)
            assert result.get("series"), f"{panel['title']}: no data for {target['query']}"
            # GROUP BY a name that is not a tag (a field, a typo) silently groups nothing.
            for series in result["series"]:
                assert all(series.get("tags", {}).values()), (panel["title"], series["tags"])
            checked += 1
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            answer = influx.call("/query", {"db": "propgw", "q": expand(variable["query"])})
            values = {v[1] for s in answer["results"][0]["series"] for v in s["values"]}
            assert values, variable["name"]
            if variable["name"] == "meter":
                assert values == {"M1", "W1"}
            checked += 1
    assert checked >= 15
