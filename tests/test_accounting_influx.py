"""Accounting's intervals written to a real InfluxDB (Debian's 1.6.7 behind the /api/v2/write
shim of tests/influx_support.py) by the InfluxDB writer, read back with their tags: the meters'
and the virtual buildings' (building and kind tags), each stamped with the start of its hour;
and the Grafana dashboard's building query finds them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.accounting import Accounting
from gateway.bus import Bus, Overflow
from gateway.clock import SystemClock
from gateway.config import load_config_text
from gateway.influx import InfluxWriter
from gateway.model import Quality, Reading
from tests.influx_support import INFLUX_DB, InfluxD, V2Shim, influxd_binary

pytestmark = pytest.mark.skipif(influxd_binary() is None,
                                reason="influxd missing: scripts/setup.sh --test installs it")

REPO = Path(__file__).resolve().parents[1]
DB = INFLUX_DB
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 1, 1, 8, 0, tzinfo=SHANGHAI).timestamp()


async def test_intervals_land_in_influxdb_with_tags_at_their_start(
        influxd: InfluxD, shim: V2Shim, tmp_path: Path) -> None:
    cfg = load_config_text(f"""
site: {{id: sun, name: 阳光花园, gateway_id: gw1, timezone: Asia/Shanghai}}
accounting: {{}}
influxdb: {{url: {shim.url}, org: x, bucket: {DB}, token: "u:p", precision: s,
           batch_interval: 50ms}}
devices:
  - {{id: M1, driver: modbus-tcp, host: h, unit: 1, profile: chint-dtsu666, kind: energy_meter,
     location: {{building: "A座", floor: B1}}}}
  - {{id: M2, driver: modbus-tcp, host: h, unit: 2, profile: chint-dtsu666, kind: energy_meter,
     location: {{building: "A座", floor: "2"}}}}
""")
    clock = SystemClock()
    bus = Bus()
    accounting = Accounting(cfg, clock, bus.publish, path=None)
    acct_feed = bus.subscribe("accounting", maxsize=1000, overflow=Overflow.DROP_OLDEST)
    writer = InfluxWriter(cfg, clock, buffer_path=None)
    influx_feed = bus.subscribe("influxdb", maxsize=10_000, overflow=Overflow.DROP_OLDEST)
    tasks = [asyncio.create_task(accounting.run(acct_feed)),
             asyncio.create_task(writer.run(influx_feed))]
    try:
        for quarter in range(13):  # 08:00 to 11:00, every 15 minutes: M1 2 kWh/h, M2 3
            ts = START + quarter * 900
            await bus.publish(Reading("M1", "import_kwh", 10 + quarter / 2, Quality.GOOD, ts))
            await bus.publish(Reading("M2", "import_kwh", 80 + quarter * 0.75, Quality.GOOD, ts))
        # 26 register readings and 3 hours x (M1, M2, building) intervals.
        async with asyncio.timeout(15):
            while writer.status().written < 26 + 9:
                await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    rows = await asyncio.to_thread(
        influxd.rows, "SELECT * FROM reading WHERE point = 'import_kwh_hour' GROUP BY *", DB)
    got = {(r["device"], r["building"], r["floor"], r["kind"],
            dt.datetime.fromtimestamp(r["time"] / 1e9, SHANGHAI).strftime("%H:%M"), r["value"])
           for r in rows}
    assert got == {
        *{("M1", "A座", "B1", "energy_meter", h, 2.0) for h in ("08:00", "09:00", "10:00")},
        *{("M2", "A座", "2", "energy_meter", h, 3.0) for h in ("08:00", "09:00", "10:00")},
        *{("building.A座", "A座", "", "building", h, 5.0)
          for h in ("08:00", "09:00", "10:00")}}
    # The dashboard's "Electricity per building, per hour" finds them.
    dashboard = json.loads((REPO / "docs" / "grafana" / "propgw-dashboard.json").read_text())
    query = next(t["query"] for p in dashboard["panels"] for t in p.get("targets", [])
                 if p["title"] == "Electricity per building, per hour")
    query = (query.replace("$site", "sun")
             .replace("$timeFilter", "time >= '2026-01-01T00:00:00Z' AND "
                                     "time < '2026-01-02T00:00:00Z'"))
    series = await asyncio.to_thread(influxd.query, query, DB)
    assert [(s["tags"]["device"], [v[1] for v in s["values"]]) for s in series] == [
        ("building.A座", [5.0, 5.0, 5.0])]
