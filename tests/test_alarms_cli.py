"""``propgw alarms report`` against a journal written by the lifecycle, and its error exits."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from gateway.alarms import journal_path
from gateway.cli import main
from gateway.clock import FakeClock
from gateway.config import load_config
from tests.test_alarm_lifecycle_rig import FORCED, HELD, SITE, TAMPER, TRAPPED, Rig


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("alarms:\n", f"state_dir: {tmp_path / 'state'}\nalarms:\n", 1),
                    encoding="utf-8")
    return path


async def fill(site_file: Path) -> None:
    """Three hours ago to now, on a fake clock whose wall time is real time."""
    config = load_config(site_file)
    clock = FakeClock(wall_offset=time.time() - 3 * 3600)
    async with Rig(clock, journal_path(config), config) as rig:
        await rig.on(TRAPPED)
        for _ in range(4):
            await rig.on(TAMPER)
            await rig.clock.advance(600)
            await rig.off(TAMPER)
        await rig.on(HELD, FORCED)
        await rig.actions.acknowledge(TRAPPED, actor="op")
        await rig.clock.advance(3600)


async def test_report_prints_the_kpis(site_file: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    await fill(site_file)
    assert main(["alarms", "report", "-c", str(site_file), "--since", "24h"]) == 0
    out = capsys.readouterr().out
    assert "alarm report for s1 (测试小区)" in out
    assert "alarms (activations)   7  (4 new incidents)" in out
    assert "   1. tamper@W1 (P3 tamper): 4 (57%)" in out
    assert "operator actions       acknowledged 1" in out
    assert "priority mix           P0 1 (14%), P1 1 (14%), P2 1 (14%), P3 4 (57%)" in out
    # The site's zone (Asia/Shanghai) with its offset; rates only over what was covered.
    assert "+08:00 (Asia/Shanghai)" in out.splitlines()[0] and "UTC" not in out
    assert "  per hour             2.33  [" in out, "7 in 3.0 h"
    assert "  per day              -  (needs a day of journal; 7 in 3.0 h)" in out
    active = [line.split(" since ")[0] for line in out.splitlines()
              if line.startswith("  P") and " since " in line]
    assert active == ["  P0 trapped@E1 (elevator_entrapment): active acknowledged",
                      "  P1 forced@D1 (door_forced): active unacknowledged",
                      "  P2 held@D1 (door_held_open): active unacknowledged"]


async def test_report_as_json_and_since_a_time(site_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    await fill(site_file)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=90)).isoformat()
    assert main(["alarms", "report", "-c", str(site_file), "--since", since, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["activations"] == 0, "everything happened more than 90 minutes ago"
    assert data["current"]["active_acknowledged"] == 1
    assert {a["alarm_id"] for a in data["stale"]} == set()


async def test_report_needs_a_journal_on_disk(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    memory = tmp_path / "memory.yaml"
    memory.write_text(SITE, encoding="utf-8")
    assert main(["alarms", "report", "-c", str(memory)]) == 2
    assert "keeps the alarm journal in memory" in capsys.readouterr().err

    missing = tmp_path / "missing.yaml"
    missing.write_text(SITE + f"state_dir: {tmp_path / 'nothing'}\n", encoding="utf-8")
    assert main(["alarms", "report", "-c", str(missing)]) == 1
    assert "no alarm journal at" in capsys.readouterr().err


async def test_report_rejects_a_bad_since(site_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alarms", "report", "-c", str(site_file), "--since", "yesterday"]) == 2
    assert "--since wants a duration" in capsys.readouterr().err


async def test_report_reads_another_journal_file(site_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    await fill(site_file)
    copy = tmp_path / "copy.sqlite3"
    source = journal_path(load_config(site_file))
    assert source is not None
    copy.write_bytes(source.read_bytes())
    for suffix in ("-wal", "-shm"):
        side = source.with_name(source.name + suffix)
        if side.exists():
            copy.with_name(copy.name + suffix).write_bytes(side.read_bytes())
    assert main(["alarms", "report", "-c", str(site_file), "--journal", str(copy)]) == 0
    assert "alarms (activations)   7" in capsys.readouterr().out
