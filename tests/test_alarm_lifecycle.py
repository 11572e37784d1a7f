"""ISA-18.2 alarm lifecycle on the fake clock and a real SQLite journal: the state table,
operator actions (valid and refused), shelving, suppression by design, latching, re-alarm,
chattering and closing of stale unacknowledged alarms."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import gateway.alarms
from gateway.alarms import AlarmEvent, AlarmState, LifecycleState, Transition
from gateway.clock import FakeClock
from gateway.config import Location
from gateway.errors import AlarmActionRejected, UnknownAlarm
from tests.test_alarm_lifecycle_rig import (
    DURESS,
    FIRE,
    FORCED,
    HELD,
    HELD2,
    LEAK,
    TAMPER,
    TRAPPED,
    Rig,
)

S = LifecycleState
T = Transition
ACTIVE, CLEARED = str(AlarmState.ACTIVE), str(AlarmState.CLEARED)


@pytest.fixture
async def rig(fake_clock: FakeClock, tmp_path: Path) -> AsyncIterator[Rig]:
    async with Rig(fake_clock, tmp_path / "alarms.sqlite3") as r:
        yield r


# --------------------------------------------------------------------------- the state table


async def test_a_to_b_activation_opens_an_incident_and_is_announced(rig: Rig) -> None:
    await rig.on(TRAPPED)
    assert rig.state(TRAPPED) is S.ACTIVE_UNACK
    [event] = rig.announced
    assert (event.state, event.transition, event.lifecycle) == (
        AlarmState.ACTIVE, T.ACTIVATED, S.ACTIVE_UNACK)
    assert event.incident_id and event.occurrences == 1 and event.actor == "system"
    assert event.seq > 0 and event.announced


async def test_b_to_c_acknowledge_is_journaled_not_announced(rig: Rig) -> None:
    await rig.on(TRAPPED)
    [ack] = await rig.actions.acknowledge(TRAPPED, actor="王五", comment="on my way")
    assert rig.state(TRAPPED) is S.ACTIVE_ACK
    assert (ack.transition, ack.actor, ack.reason, ack.lifecycle) == (
        T.ACKNOWLEDGED, "王五", "on my way", S.ACTIVE_ACK)
    assert ack.state is AlarmState.ACTIVE and not ack.announced
    assert rig.said() == [("activated", ACTIVE)], "an acknowledgement is no new alarm"


async def test_b_to_d_return_unacknowledged_then_d_to_a_by_ack(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.off(HELD)
    assert rig.state(HELD) is S.RTN_UNACK
    assert rig.said(HELD) == [("activated", ACTIVE), ("returned_to_normal", CLEARED)]
    incident = rig.record(HELD).incident_id
    [ack] = await rig.actions.acknowledge(HELD, actor="op")
    assert rig.state(HELD) is S.NORMAL and ack.lifecycle is S.NORMAL
    assert ack.incident_id == incident


async def test_c_to_a_return_after_acknowledgement_closes_the_incident(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.actions.acknowledge(HELD, actor="op")
    await rig.off(HELD)
    assert rig.state(HELD) is S.NORMAL
    first = rig.last(HELD, T.ACTIVATED).incident_id
    await rig.on(HELD)
    assert rig.last(HELD).transition is T.ACTIVATED
    assert rig.last(HELD).incident_id != first, "a closed incident is not reopened"


async def test_d_to_b_reactivation_joins_the_open_incident(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.off(HELD)
    await rig.clock.advance(120)
    await rig.on(HELD)
    assert rig.state(HELD) is S.ACTIVE_UNACK
    again = rig.announced[-1]
    assert (again.transition, again.state, again.occurrences) == (
        T.REACTIVATED, AlarmState.ACTIVE, 2)
    assert again.incident_id == rig.last(HELD, T.ACTIVATED).incident_id


async def test_latching_alarm_returns_to_latched_and_needs_ack_then_reset(rig: Rig) -> None:
    await rig.on(LEAK)
    await rig.off(LEAK)
    assert rig.state(LEAK) is S.LATCHED
    assert rig.said(LEAK)[-1] == ("returned_to_normal", CLEARED), \
        "the condition ended: consumers are told, the latch is the operator's business"
    with pytest.raises(AlarmActionRejected, match="acknowledge the alarm before resetting"):
        await rig.actions.reset(LEAK, actor="op")
    await rig.actions.acknowledge(LEAK, actor="op")
    assert rig.state(LEAK) is S.LATCHED and rig.record(LEAK).acked
    assert rig.announced[-1].latched, "the end of the condition is marked latched"
    [reset] = await rig.actions.reset(LEAK, actor="op", reason="valve closed")
    assert (reset.transition, reset.lifecycle, reset.reason) == (T.RESET, S.NORMAL,
                                                                  "valve closed")
    assert rig.said(LEAK)[-1] == ("reset", CLEARED) and not reset.latched, \
        "the reset is announced: it is what clears a latching alarm's work order"
    assert rig.announced[-1].actor == "op"
    await rig.clock.advance(7200)
    assert rig.state(LEAK) is S.NORMAL


async def test_latched_alarm_reactivating_joins_its_incident(rig: Rig) -> None:
    await rig.on(LEAK)
    await rig.actions.acknowledge(LEAK, actor="op")
    await rig.off(LEAK)
    assert rig.state(LEAK) is S.LATCHED
    await rig.on(LEAK)
    assert rig.state(LEAK) is S.ACTIVE_UNACK
    assert rig.last(LEAK).transition is T.REACTIVATED and rig.last(LEAK).occurrences == 2


async def test_latched_alarms_are_never_closed_by_the_system(rig: Rig) -> None:
    await rig.on(LEAK)
    await rig.off(LEAK)
    await rig.advance(3 * 86400, step=3600)
    assert rig.state(LEAK) is S.LATCHED


async def test_returned_unacknowledged_is_closed_by_the_system_after_an_hour(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.off(HELD)
    await rig.advance(3599)
    assert rig.state(HELD) is S.RTN_UNACK
    await rig.advance(1)
    assert rig.state(HELD) is S.NORMAL
    closed = rig.last(HELD)
    assert (closed.transition, closed.actor, closed.announced) == (T.CLOSED, "system", False)
    assert "not acknowledged" in closed.reason


async def test_every_transition_says_who_when_and_why(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.actions.shelve(HELD, actor="李四", reason="sensor being replaced", duration=600)
    await rig.actions.comment(HELD, actor="李四", text="technician called")
    for event in rig.events:
        assert event.ts > 0 and event.actor and event.transition is not None
    shelved = rig.last(HELD, T.SHELVED)
    assert shelved.actor == "李四" and "sensor being replaced" in shelved.reason
    assert rig.last(HELD, T.COMMENT).reason == "technician called"


# --------------------------------------------------------------------------- invalid actions

REFUSALS = [
    # (setup, action, kwargs, reason)
    ("normal", "acknowledge", {}, "nothing to acknowledge"),
    ("acked", "acknowledge", {}, "already acknowledged"),
    ("active", "reset", {}, "not latched (its condition is still active)"),
    ("normal", "reset", {}, "not latched"),
    ("active_p0", "shelve", {"reason": "noisy"}, "life-safety (P0) alarms cannot be shelved"),
    ("active", "shelve", {"reason": " "}, "a reason is required"),
    ("active", "shelve", {"reason": "x", "duration": 9 * 3600}, "shelve_max"),
    ("active", "shelve", {"reason": "x", "duration": 0}, "duration must be between"),
    ("normal", "shelve", {"reason": "x", "one_shot": True}, "one-shot shelving is for an "
                                                            "active alarm"),
    ("shelved", "shelve", {"reason": "again"}, "already shelved by op"),
    ("oos", "shelve", {"reason": "x"}, "out of service; return it to service first"),
    ("active", "unshelve", {}, "not shelved"),
    ("active", "remove_from_service", {"reason": ""}, "a reason is required"),
    ("oos", "remove_from_service", {"reason": "x"}, "already out of service"),
    ("active", "return_to_service", {}, "in service"),
    ("active", "comment", {"text": ""}, "comment is empty"),
    ("active", "acknowledge_as_system", {}, "operator's name is required"),
]


@pytest.mark.parametrize(("setup", "action", "kwargs", "reason"), REFUSALS,
                         ids=[f"{s}-{a}-{i}" for i, (s, a, _, _) in enumerate(REFUSALS)])
async def test_invalid_actions_are_refused_with_a_reason(rig: Rig, setup: str, action: str,
                                                         kwargs: dict[str, object],
                                                         reason: str) -> None:
    alarm = TRAPPED if setup == "active_p0" else HELD
    if setup != "normal":
        await rig.on(alarm)
    if setup == "acked":
        await rig.actions.acknowledge(alarm, actor="op")
    elif setup == "shelved":
        await rig.actions.shelve(alarm, actor="op", reason="noisy")
    elif setup == "oos":
        await rig.actions.remove_from_service(alarm, actor="op", reason="repair")
    before = rig.record(alarm) if rig.book.get(alarm) else None
    journaled = len(rig.events)
    actor = "system" if action == "acknowledge_as_system" else "op"
    method = getattr(rig.actions, action.removesuffix("_as_system"))
    with pytest.raises(AlarmActionRejected) as info:
        await method(alarm, actor=actor, **kwargs)
    assert reason in info.value.reason
    assert info.value.alarm_id == alarm and info.value.state == rig.state(alarm).value
    assert len(rig.events) == journaled, "a refused action leaves no trace but the error"
    after = rig.record(alarm) if rig.book.get(alarm) else None
    assert (before and before.to_json()) == (after and after.to_json())


async def test_actions_on_unknown_alarms_are_refused(rig: Rig) -> None:
    with pytest.raises(UnknownAlarm, match="no such alarm"):
        await rig.actions.acknowledge("nope@E1", actor="op")
    with pytest.raises(UnknownAlarm):
        await rig.actions.acknowledge("trapped@D1", actor="op")  # rule not for doors


async def test_a_configured_alarm_can_go_out_of_service_before_it_ever_fired(rig: Rig) -> None:
    await rig.actions.remove_from_service(TRAPPED, actor="维保", reason="annual inspection")
    assert rig.state(TRAPPED) is S.OUT_OF_SERVICE
    await rig.on(TRAPPED)
    assert rig.announced == [], "out of service: evaluated and journaled, not announced"
    assert rig.last(TRAPPED).transition is T.ACTIVATED
    assert rig.last(TRAPPED).lifecycle is S.OUT_OF_SERVICE
    await rig.actions.return_to_service(TRAPPED, actor="维保")
    assert rig.said(TRAPPED) == [("returned_to_service", ACTIVE)], \
        "still active when back in service: announced now"
    assert rig.state(TRAPPED) is S.ACTIVE_UNACK


# --------------------------------------------------------------------------- shelving


async def test_timed_shelving_hides_and_expires_on_the_clock(rig: Rig) -> None:
    await rig.actions.shelve(HELD, actor="op", reason="door propped for delivery",
                             duration=1800)
    await rig.on(HELD)
    assert rig.state(HELD) is S.SHELVED
    assert rig.said() == []
    assert rig.last(HELD).transition is T.ACTIVATED, "shelved alarms are still journaled"
    await rig.advance(1799)
    assert rig.state(HELD) is S.SHELVED
    await rig.advance(1)
    assert rig.state(HELD) is S.ACTIVE_UNACK
    assert rig.said(HELD) == [("shelve_expired", ACTIVE)]


async def test_shelving_defaults_to_the_configured_maximum(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.actions.shelve(HELD, actor="op", reason="nuisance")
    shelf = rig.record(HELD).shelf
    assert shelf is not None and shelf.until - rig.clock.time() == 8 * 3600


async def test_one_shot_shelving_ends_at_return_to_normal(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.actions.shelve(HELD, actor="op", reason="known", one_shot=True)
    await rig.off(HELD)
    assert rig.journaled(HELD)[-2:] == ["returned_to_normal", "unshelved"]
    assert rig.last(HELD).reason.startswith("one-shot")
    await rig.on(HELD)
    assert rig.said(HELD)[-1] == ("reactivated", ACTIVE), \
        "one-shot: the next activation is announced"


async def test_shelving_an_announced_alarm_still_sends_its_clear(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.actions.shelve(HELD, actor="op", reason="x", duration=600)
    await rig.off(HELD)
    assert rig.said(HELD) == [("activated", ACTIVE), ("returned_to_normal", CLEARED)], \
        "a work order opened by the ACTIVE must learn the condition ended"


async def test_unshelving_an_active_alarm_announces_it(rig: Rig) -> None:
    await rig.actions.shelve(FORCED, actor="op", reason="x", duration=600)
    await rig.on(FORCED)
    await rig.actions.unshelve(FORCED, actor="op", reason="done")
    assert rig.said(FORCED) == [("unshelved", ACTIVE)]
    await rig.advance(600)
    assert rig.said(FORCED) == [("unshelved", ACTIVE)], "the old expiry timer is gone"
    assert rig.journaled(FORCED) == ["shelved", "activated", "unshelved"]


# --------------------------------------------------------------------------- suppression


async def test_door_held_open_during_a_fire_in_its_zone_is_suppressed_but_journaled(
        rig: Rig) -> None:
    await rig.on(FIRE)
    await rig.on(HELD, HELD2)
    assert rig.state(HELD) is S.SUPPRESSED, "same zone Z1 as the fire panel"
    assert rig.state(HELD2) is S.ACTIVE_UNACK, "zone Z2: not suppressed"
    assert [e.alarm_id for e in rig.announced] == [FIRE, HELD2]
    journaled = rig.last(HELD, T.ACTIVATED)
    assert not journaled.announced and "fire-doors" in journaled.reason
    await rig.off(FIRE)
    assert rig.state(HELD) is S.ACTIVE_UNACK
    assert rig.said(HELD) == [("unsuppressed", ACTIVE)], \
        "still held open after the fire: now it is shown"


async def test_a_fire_starting_suppresses_an_already_active_door_alarm(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.on(FIRE)
    assert rig.state(HELD) is S.SUPPRESSED
    assert rig.journaled(HELD) == ["activated", "suppressed"]
    await rig.off(HELD)
    assert rig.said(HELD)[-1] == ("returned_to_normal", CLEARED)


async def test_a_suppressed_alarm_that_ends_unseen_needs_no_acknowledgement(rig: Rig) -> None:
    await rig.on(FIRE)
    await rig.on(HELD)
    await rig.off(HELD)
    assert rig.state(HELD) is S.SUPPRESSED, "hidden as long as the fire lasts"
    await rig.on(HELD)
    assert rig.last(HELD).transition is T.REACTIVATED, "one incident while hidden"
    await rig.off(HELD, FIRE)
    assert rig.state(HELD) is S.NORMAL
    assert rig.journaled(HELD) == ["activated", "returned_to_normal", "reactivated",
                                   "returned_to_normal", "unsuppressed", "closed"]
    assert rig.said(HELD) == []


async def test_life_safety_alarms_are_never_suppressed(rig: Rig) -> None:
    await rig.on(FIRE)
    await rig.on(DURESS)
    assert rig.state(DURESS) is S.ACTIVE_UNACK
    assert rig.said(DURESS) == [("activated", ACTIVE)]


# --------------------------------------------------------------------------- re-alarm, chatter


async def test_realarm_announces_again_while_the_alarm_stays_active(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.actions.acknowledge(HELD, actor="op")
    await rig.advance(599)
    assert rig.said(HELD) == [("activated", ACTIVE)]
    await rig.advance(1)
    assert rig.said(HELD)[-1] == ("realarmed", ACTIVE)
    assert rig.state(HELD) is S.ACTIVE_UNACK, "re-alarm asks for acknowledgement again"
    await rig.advance(600)
    assert [t for t, _ in rig.said(HELD)].count("realarmed") == 2
    await rig.off(HELD)
    await rig.advance(1200)
    assert [t for t, _ in rig.said(HELD)].count("realarmed") == 2, "stops at return to normal"


async def test_realarm_counts_from_the_acknowledgement(rig: Rig) -> None:
    await rig.on(HELD)
    await rig.advance(300)
    await rig.actions.acknowledge(HELD, actor="op")
    await rig.advance(599)
    assert rig.said(HELD) == [("activated", ACTIVE)]
    await rig.advance(1)
    assert rig.said(HELD)[-1] == ("realarmed", ACTIVE)


async def test_chattering_is_detected_reported_and_quietened(rig: Rig) -> None:
    for _ in range(3):
        await rig.on(TAMPER)
        await rig.clock.advance(5)
        await rig.off(TAMPER)
        await rig.clock.advance(10)
    assert rig.record(TAMPER).chattering
    chatter = rig.last(TAMPER, T.CHATTERING)
    assert chatter.reason == "3 activations within 60 s" and chatter.chattering
    assert rig.said(TAMPER) == [
        ("activated", ACTIVE), ("returned_to_normal", CLEARED),
        ("reactivated", ACTIVE), ("returned_to_normal", CLEARED),
        ("reactivated", ACTIVE)], "the third activation is announced, flagged, then held"
    assert rig.announced[-1].chattering
    for _ in range(5):  # keeps chattering: nothing more reaches consumers
        await rig.on(TAMPER)
        await rig.clock.advance(2)
        await rig.off(TAMPER)
        await rig.clock.advance(2)
    assert len(rig.said(TAMPER)) == 5
    assert {e.incident_id for e in rig.events if e.alarm_id == TAMPER} == {
        rig.last(TAMPER).incident_id}, "one incident for the whole episode"
    assert rig.last(TAMPER).occurrences == 8
    await rig.advance(60)
    assert not rig.record(TAMPER).chattering
    assert rig.said(TAMPER)[-1] == ("chatter_ended", CLEARED)


async def test_two_activations_are_not_chattering(rig: Rig) -> None:
    await rig.on(TAMPER)
    await rig.off(TAMPER)
    await rig.clock.advance(30)
    await rig.on(TAMPER)
    await rig.off(TAMPER)
    await rig.clock.advance(31)
    await rig.on(TAMPER)
    assert not rig.record(TAMPER).chattering, "the first activation left the 60 s window"


async def test_p0_out_of_service_activation_is_logged(rig: Rig,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    await rig.actions.remove_from_service(TRAPPED, actor="维保", reason="car stripped")
    await rig.on(TRAPPED)
    assert "life-safety alarm trapped@E1 activated while out of service" in caplog.text
    assert rig.announced == []


async def test_forced_door_p1_can_be_shelved_with_a_reason(rig: Rig) -> None:
    await rig.on(FORCED)
    [event] = await rig.actions.shelve(FORCED, actor="op", reason="lock broken, ticket 42",
                                       duration=3600)
    assert event.lifecycle is S.SHELVED and "ticket 42" in event.reason


async def test_active_lists_hidden_alarms_too(rig: Rig) -> None:
    await rig.actions.remove_from_service(HELD, actor="op", reason="x")
    await rig.on(HELD, TRAPPED)
    assert [(e.alarm_id, e.lifecycle) for e in rig.book.active()] == [
        (HELD, S.OUT_OF_SERVICE), (TRAPPED, S.ACTIVE_UNACK)]


def test_the_public_surface_is_exported() -> None:
    for name in ("AlarmActions", "AlarmBook", "AlarmJournal", "AlarmRecord", "LifecycleState",
                 "Transition", "alarm_report", "render_report", "journal_path"):
        assert name in gateway.alarms.__all__
    legacy = AlarmEvent(alarm_id="a", rule_id="r", device="d", device_name="d", category="c",
                        priority="P2", state=AlarmState.ACTIVE, message_zh="", message_en="",
                        location=Location(), ts=0.0, condition_since=0.0, mono=0.0)
    assert legacy.lifecycle is None and legacy.occurrences == 1 and legacy.incident_id == ""
