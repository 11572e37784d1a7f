"""Every query of the shipped Grafana dashboard runs on a real InfluxDB engine (Debian's
``influxdb`` 1.6.7, started on a free loopback port with a throw-away data dir) against
readings shaped as propgw writes them, and returns data: the InfluxQL is valid, the tags and
fields it filters on are the right kind (tag or field), and the point names match."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.site import free_port

REPO = Path(__file__).resolve().parents[1]
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"

pytestmark = pytest.mark.skipif(not Path(INFLUXD).exists(),
                                reason="Debian's influxdb package is not installed")

CONF = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp}/meta"
[data]
  dir = "{tmp}/data"
  wal-dir = "{tmp}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""


class Influx:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def call(self, path: str, params: dict[str, str], body: bytes | None = None) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if text else None


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influx]:
    http = free_port()
    conf = tmp_path / "influxdb.conf"
    conf.write_text(CONF.format(tmp=tmp_path, rpc=free_port(), http=http))
    log = (tmp_path / "influxd.log").open("wb")
    proc = subprocess.Popen([INFLUXD, "-config", str(conf)], stdout=log, stderr=log)
    try:
        server = Influx(http)
        deadline = time.monotonic() + 20
        while True:
            try:
                server.call("/ping", {})
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        server.call("/query", {"q": "CREATE DATABASE propgw"}, b"")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


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
