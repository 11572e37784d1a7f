"""A restart in the middle of each lifecycle state restores it exactly: a second AlarmBook
opened on the same SQLite file carries on where the first stopped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.alarms import AlarmState, LifecycleState
from gateway.clock import FakeClock
from tests.test_alarm_lifecycle_rig import (
    FIRE,
    FORCED,
    HELD,
    LEAK,
    TAMPER,
    TRAPPED,
    Rig,
    site_config,
)

S = LifecycleState
ACTIVE, CLEARED = str(AlarmState.ACTIVE), str(AlarmState.CLEARED)

Step = Callable[[Rig], Awaitable[None]]


async def _active_unack(r: Rig) -> None:
    await r.on(TRAPPED)


async def _active_ack(r: Rig) -> None:
    await r.on(TRAPPED)
    await r.actions.acknowledge(TRAPPED, actor="op")


async def _rtn_unack(r: Rig) -> None:
    await r.on(FORCED)
    await r.off(FORCED)


async def _latched(r: Rig) -> None:
    await r.on(LEAK)
    await r.off(LEAK)


async def _latched_acked(r: Rig) -> None:
    await _latched(r)
    await r.actions.acknowledge(LEAK, actor="op")


async def _shelved(r: Rig) -> None:
    await r.on(FORCED)
    await r.actions.shelve(FORCED, actor="op", reason="x", duration=1000)


async def _shelved_one_shot(r: Rig) -> None:
    await r.on(FORCED)
    await r.actions.shelve(FORCED, actor="op", reason="x", one_shot=True)


async def _suppressed(r: Rig) -> None:
    await r.on(FIRE, HELD)


async def _out_of_service(r: Rig) -> None:
    await r.actions.remove_from_service(FORCED, actor="op", reason="repair")
    await r.on(FORCED)


async def _chattering(r: Rig) -> None:
    for _ in range(3):
        await r.on(TAMPER)
        await r.off(TAMPER)
        await r.clock.advance(1)


# (setup, alarm, state after restart, what the restored book must still do)
CASES: dict[str, tuple[Step, str, LifecycleState]] = {
    "active_unacknowledged": (_active_unack, TRAPPED, S.ACTIVE_UNACK),
    "active_acknowledged": (_active_ack, TRAPPED, S.ACTIVE_ACK),
    "returned_unacknowledged": (_rtn_unack, FORCED, S.RTN_UNACK),
    "latched": (_latched, LEAK, S.LATCHED),
    "latched_acknowledged": (_latched_acked, LEAK, S.LATCHED),
    "shelved": (_shelved, FORCED, S.SHELVED),
    "shelved_one_shot": (_shelved_one_shot, FORCED, S.SHELVED),
    "suppressed": (_suppressed, HELD, S.SUPPRESSED),
    "out_of_service": (_out_of_service, FORCED, S.OUT_OF_SERVICE),
    "chattering": (_chattering, TAMPER, S.RTN_UNACK),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_restart_restores_the_state(case: str, tmp_path: Path) -> None:
    setup, alarm, state = CASES[case]
    path = tmp_path / "alarms.sqlite3"
    clock = FakeClock()
    async with Rig(clock, path) as first:
        await setup(first)
        before = first.record(alarm).to_json()
        assert first.state(alarm) is state
    await clock.advance(5)  # the gateway was down for 5 s
    async with Rig(clock, path) as second:
        assert second.state(alarm) is state
        assert second.record(alarm).to_json() == before, "restored exactly, field by field"
        assert [r.alarm_id for r in second.book.restored] == sorted(
            r.alarm_id for r in second.book.records())
        await CONTINUATIONS[case](second)


async def _continue_active_unack(r: Rig) -> None:
    await r.actions.acknowledge(TRAPPED, actor="op")
    await r.off(TRAPPED)
    assert r.said() == [("returned_to_normal", CLEARED)], \
        "consumers got ACTIVE before the restart, so they get the CLEARED after it"
    assert r.state(TRAPPED) is S.NORMAL


async def _continue_active_ack(r: Rig) -> None:
    await r.off(TRAPPED)
    assert r.state(TRAPPED) is S.NORMAL


async def _continue_rtn_unack(r: Rig) -> None:
    await r.advance(3600 - 5 - 1)
    assert r.state(FORCED) is S.RTN_UNACK
    await r.advance(1)
    assert r.state(FORCED) is S.NORMAL, "the close deadline survived the restart"


async def _continue_latched(r: Rig) -> None:
    await r.advance(7200, step=3600)
    assert r.state(LEAK) is S.LATCHED
    await r.actions.acknowledge(LEAK, actor="op")
    await r.actions.reset(LEAK, actor="op")
    assert r.state(LEAK) is S.NORMAL


async def _continue_latched_acked(r: Rig) -> None:
    await r.actions.reset(LEAK, actor="op")
    assert r.state(LEAK) is S.NORMAL


async def _continue_shelved(r: Rig) -> None:
    await r.advance(1000 - 5 - 1)
    assert r.state(FORCED) is S.SHELVED
    await r.advance(1)
    assert r.said(FORCED) == [("shelve_expired", ACTIVE)], "expires at the original time"


async def _continue_one_shot(r: Rig) -> None:
    await r.off(FORCED)
    assert r.journaled(FORCED)[-1] == "unshelved"
    assert r.state(FORCED) is S.RTN_UNACK


async def _continue_suppressed(r: Rig) -> None:
    await r.off(FIRE)
    assert r.said(HELD) == [("unsuppressed", ACTIVE)]


async def _continue_oos(r: Rig) -> None:
    await r.actions.return_to_service(FORCED, actor="op")
    assert r.said(FORCED) == [("returned_to_service", ACTIVE)]


async def _continue_chattering(r: Rig) -> None:
    assert r.record(TAMPER).chattering
    await r.on(TAMPER)
    assert r.said(TAMPER) == [], "still chattering after the restart: held back"
    await r.off(TAMPER)
    await r.advance(60)
    assert not r.record(TAMPER).chattering
    assert r.said(TAMPER) == [("chatter_ended", CLEARED)]


CONTINUATIONS: dict[str, Step] = {
    "active_unacknowledged": _continue_active_unack,
    "active_acknowledged": _continue_active_ack,
    "returned_unacknowledged": _continue_rtn_unack,
    "latched": _continue_latched,
    "latched_acknowledged": _continue_latched_acked,
    "shelved": _continue_shelved,
    "shelved_one_shot": _continue_one_shot,
    "suppressed": _continue_suppressed,
    "out_of_service": _continue_oos,
    "chattering": _continue_chattering,
}


async def test_restart_keeps_the_realarm_deadline(tmp_path: Path) -> None:
    path, clock = tmp_path / "alarms.sqlite3", FakeClock()
    async with Rig(clock, path) as first:
        await first.on(HELD)
        await first.advance(400)
    async with Rig(clock, path) as second:
        await second.advance(199)
        assert second.said() == []
        await second.advance(1)
        assert second.said(HELD) == [("realarmed", ACTIVE)]


async def test_restart_normal_alarms_leave_nothing_behind(tmp_path: Path) -> None:
    path, clock = tmp_path / "alarms.sqlite3", FakeClock()
    async with Rig(clock, path) as first:
        await first.on(FORCED)
        await first.actions.acknowledge(FORCED, actor="op")
        await first.off(FORCED)
    async with Rig(clock, path) as second:
        assert second.book.records() == []
        assert len(await second.journal.events()) == 3, "the history stays in the journal"


async def test_alarms_of_removed_rules_are_closed_at_restart(tmp_path: Path) -> None:
    path, clock = tmp_path / "alarms.sqlite3", FakeClock()
    async with Rig(clock, path) as first:
        await first.on(FORCED)
    config = site_config()
    config = config.model_copy(update={"rules": [r for r in config.rules if r.id != "forced"]})
    async with Rig(clock, path, config) as second:
        assert second.book.records() == []
        [closed] = second.announced
        assert (closed.alarm_id, str(closed.transition), closed.state) == (
            FORCED, "closed", AlarmState.CLEARED)
        assert "no longer configured" in closed.reason


async def test_events_journaled_but_not_delivered_are_delivered_after_a_crash(
        tmp_path: Path) -> None:
    path, clock = tmp_path / "alarms.sqlite3", FakeClock()
    async with Rig(clock, path) as first:
        await first.on(FORCED)

        async def crash(event: object) -> None:
            raise RuntimeError("power cut between the commit and the delivery")

        first.book._sink = crash
        with pytest.raises(RuntimeError):
            await first.on(TRAPPED)
        assert [e.alarm_id for e in first.announced] == [FORCED], \
            "the crash came before anyone heard of the entrapment"
    async with Rig(clock, path) as second:
        [replayed] = second.announced
        assert (replayed.alarm_id, replayed.state, replayed.seq) == (
            TRAPPED, AlarmState.ACTIVE, 2), "delivered at start-up, same seq; FORCED not again"
        assert replayed.incident_id == second.record(TRAPPED).incident_id
    async with Rig(clock, path) as third:
        assert third.announced == [], "delivered once is enough"
