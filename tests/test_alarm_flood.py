"""Alarm floods on the fake clock and a real SQLite journal: 200 alarms in one minute, life
safety still individually and in order, the rest grouped, nothing lost from the journal."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms import AlarmState, FloodState, LifecycleState, Transition
from gateway.alarms._flood import FloodDetector, chatter_window
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.config._models import ChatterConfig, FloodConfig
from tests.test_alarm_lifecycle_rig import Rig

PRIORITIES = ("P0", "P1", "P2", "P3")


def flood_site(devices: int = 50) -> GatewayConfig:
    data: dict[str, Any] = {
        "site": {"id": "s1", "name": "flood", "gateway_id": "gw1"},
        "devices": [{"id": f"S{i:02d}", "driver": "modbus-tcp", "host": "127.0.0.1",
                     "kind": "sensor", "location": {"zone": f"Z{i % 5}"},
                     "points": [{"name": "x", "address": 0}]} for i in range(devices)],
        "rules": [{"id": f"r{p.lower()}", "kind": "sensor", "when": {"point": "x", "eq": 1},
                   "category": f"cat_{p.lower()}", "priority": p,
                   "message": {"zh": p, "en": p}} for p in PRIORITIES],
    }
    return load_config_text(yaml.safe_dump(data))


async def test_200_alarms_in_a_minute(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "alarms.sqlite3"
    config = flood_site()
    alarms = [f"r{p.lower()}@S{i:02d}" for i in range(50) for p in PRIORITIES]
    random.Random(7).shuffle(alarms)
    urgent = [a for a in alarms if a.startswith(("rp0", "rp1"))]

    async with Rig(clock, path, config) as rig:
        for alarm in alarms:
            await rig.on(alarm)
            await clock.advance(0.3)  # 200 alarms in 60 s

        flood_id = rig.book.flood.flood_id
        assert flood_id is not None
        starts = [e for e in rig.announced if e.transition is Transition.FLOOD_STARTED]
        assert len(starts) == 1 and starts[0].state is AlarmState.ACTIVE
        assert starts[0].seq > 0 and not starts[0].work_order
        first_flooded = alarms[10]  # the 11th new alarm within 10 min starts the flood
        assert rig.last(first_flooded, Transition.ACTIVATED).seq < starts[0].seq

        individually = [e.alarm_id for e in rig.announced
                        if e.transition is Transition.ACTIVATED]
        assert [a for a in individually if a in urgent] == urgent, \
            "every P0/P1 alarm came through on its own, in the order raised"
        lower_announced = [a for a in individually if a not in urgent]
        assert lower_announced == [a for a in alarms[:10] if a not in urgent], \
            "P2/P3 only individually before the flood started"
        grouped = [a for a in alarms[11:] if a not in urgent]
        assert all(rig.record(a).flood_group == flood_id for a in grouped)
        assert all(rig.state(a) is LifecycleState.ACTIVE_UNACK for a in alarms)

        # Nothing is lost from the journal: every activation is there, read back from disk.
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT alarm_id, announced FROM events "
                                "WHERE transition = 'activated' ORDER BY seq").fetchall()
        assert [a for a, _ in rows] == alarms
        assert sum(announced for _, announced in rows) == len(urgent) + len(lower_announced)

        # Half of the grouped alarms end during the flood: nobody was shown them.
        ended = grouped[::2]
        await rig.off(*ended)
        assert not [e for e in rig.announced if e.alarm_id in ended
                    and e.transition is Transition.RETURNED]
        assert all(rig.state(a) is LifecycleState.RTN_UNACK for a in ended)

        # The window slides: the flood ends once fewer than 5 alarms remain in it.
        await rig.advance(540, step=30)
        assert rig.book.flood.flood_id == flood_id, "200 alarms are still in the window"
        await rig.advance(120, step=0.3)
        assert rig.book.flood.flood_id is None
        [end] = [e for e in rig.announced if e.transition is Transition.FLOOD_ENDED]
        assert end.state is AlarmState.CLEARED and end.incident_id == flood_id
        assert end.evidence["new_alarms"] == 200
        assert end.evidence["grouped"] == len(grouped)
        released = [e.alarm_id for e in rig.announced
                    if e.transition is Transition.FLOOD_RELEASED]
        assert released == [a for a in grouped if a not in ended], \
            "alarms still active after the flood are announced, oldest first"
        assert end.seq < min(e.seq for e in rig.announced
                             if e.transition is Transition.FLOOD_RELEASED)
        assert all(rig.state(a) is LifecycleState.NORMAL for a in ended), \
            "ended while grouped, never shown: closed with the flood, nothing to acknowledge"
        assert all(rig.journaled(a)[-1] == "closed" for a in ended)


async def test_a_flood_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "alarms.sqlite3"
    config = flood_site(12)
    async with Rig(clock, path, config) as rig:
        for i in range(12):
            await rig.on(f"rp3@S{i:02d}")
        flood_id = rig.book.flood.flood_id
        assert flood_id is not None
    async with Rig(clock, path, config) as rig:
        assert rig.book.flood.flood_id == flood_id
        await rig.on("rp2@S00")
        assert rig.said() == [], "still grouping after the restart"
        await rig.advance(600, step=10)
        assert rig.book.flood.flood_id is None
        assert str(rig.announced[0].transition) == "flood_ended"


def test_flood_detector_hysteresis_and_sliding_window() -> None:
    flood = FloodDetector(FloodConfig())
    starts = [flood.count(t, t) for t in range(0, 110, 10)]
    assert starts == [False] * 10 + [True], "more than 10 within 10 min starts it"
    assert flood.active
    assert not flood.ends(599.0)
    # At 600 s the first alarm leaves the window: 10 remain; the flood needs fewer than 5.
    assert not flood.ends(650.0)
    assert flood.next_check() == 60.0 + 600.0
    assert flood.ends(660.0)
    final = flood.finish()
    assert final.counted == 11 and not flood.active


def test_flood_needs_more_than_start_above_in_the_window() -> None:
    flood = FloodDetector(FloodConfig())
    assert not any(flood.count(t * 61.0, t * 61.0) for t in range(100)), \
        "one alarm a minute is never a flood"
    assert flood.in_window(100 * 61.0) == 9


def test_flood_state_round_trips_through_json() -> None:
    state = FloodState(history=[1.0, 2.0], flood_id="f", started=1.0, counted=2, grouped=1,
                       peak=2)
    assert FloodState.from_json(state.to_json()) == state


def test_chatter_window_counts_within_the_window_only() -> None:
    cfg = ChatterConfig()
    history: list[float] = []
    assert [chatter_window(history, t, cfg) for t in (0.0, 30.0, 59.0)] == [False, False, True]
    history2: list[float] = []
    assert [chatter_window(history2, t, cfg) for t in (0.0, 30.0, 60.0)] == [
        False, False, False]


@pytest.mark.parametrize(("flood", "message"), [
    ({"start_above": 4, "end_below": 5}, "end_below (5) must be <= start_above (4)"),
    ({"individual": ["P1"]}, "individual must include P0"),
])
def test_flood_config_is_checked(flood: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FloodConfig.model_validate(flood)
