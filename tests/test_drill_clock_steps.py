"""Drills: the wall clock steps an hour forward and back while alarms, shelving and work orders
are running, as when NTP corrects a Raspberry Pi that booted without a real-time clock.

Every window is measured on monotonic time, so each escalation, expiry and delay happens at the
same monotonic instant whatever the wall clock does; the wall clock only labels (the ISO times
sent upstream show the step). A restart is the one moment monotonic time does not carry over:
deadlines are then derived from the saved wall instants, never longer than their own window.

Everything runs on the fake clock through the real rule engine, alarm book (SQLite journal in
``tmp_path``) and work-order desk; the last drill goes through the whole ``Gateway``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from gateway.alarms import AlarmEngine, AlarmEvent, AlarmJournal, AlarmState, Transition
from gateway.app import Gateway
from gateway.bus import Bus
from gateway.clock import FakeClock
from gateway.config import GatewayConfig, load_config_text
from gateway.model import Quality, Reading
from gateway.workorders import WorkOrder, WorkOrderDesk
from tests.drill_support import REPORT, DrillRow
from tests.support import Mosquitto
from tests.test_alarm_flood import flood_site
from tests.test_alarm_lifecycle_rig import FORCED, HELD, Rig
from tests.test_delivery_mqtt import publish

T = Transition
HOUR = 3600.0

#: Wall-clock steps by monotonic offset from the drill's origin.
Steps = Mapping[float, float]

SITE = """
site: {id: s1, name: 测试小区, gateway_id: gw1}
devices:
  - {id: E1, name: 1号梯, driver: modbus-tcp, host: 127.0.0.1, kind: elevator,
     location: {building: "2"}, points: [{name: trapped, address: 0},
                                         {name: heartbeat, address: 1}]}
rules:
  - {id: trapped, kind: elevator, for: 30s, when: {point: trapped, eq: 1},
     category: elevator_entrapment, priority: P0, message: {zh: 困人, en: trapped}}
  - {id: silent, kind: elevator, when: {stale: 2m, point: heartbeat}, category: comm_fault,
     priority: P2, work_order: false, message: {zh: 无心跳, en: no heartbeat}}
"""

#: The default P0 ladder, by monotonic seconds after raising: 1, 5, 15 and 30 min, with
#: reminders about the 30-minute maintenance window at 15 and 25 min.
LADDER = [("raised", 1, 0.0), ("escalated", 2, 60.0), ("escalated", 3, 300.0),
          ("escalated", 4, 900.0), ("pre_alert", 4, 900.0), ("pre_alert", 4, 1500.0),
          ("unacknowledged", 4, 1800.0)]

pytestmark = pytest.mark.drill


@dataclass(frozen=True)
class Sent:
    """A work order as the sink got it, with both clocks at that moment."""

    mono: float
    wall: float
    order: WorkOrder

    @property
    def level(self) -> int:
        return self.order.escalation.level if self.order.escalation else 0


class Chain:
    """Readings → rule engine → alarm book (journal on disk) → work-order desk, all running."""

    def __init__(self, clock: FakeClock, path: Path, restore: Sequence[WorkOrder] = ()) -> None:
        self.clock = clock
        self.config = load_config_text(SITE)
        self.bus = Bus()
        self.feed = self.bus.subscribe("alarms")
        self.alarms: list[AlarmEvent] = []
        self.sent: list[Sent] = []
        self.desk = WorkOrderDesk(self.config.site, clock, self._order,
                                  policies=self.config.work_orders)
        self.desk.restore(restore)
        self.engine = AlarmEngine(self.config, clock, self._alarm, journal=AlarmJournal(path))
        self._tasks: list[asyncio.Task[None]] = []

    async def _alarm(self, event: AlarmEvent) -> None:
        self.alarms.append(event)
        await self.desk.handle(event)

    async def _order(self, order: WorkOrder) -> None:
        self.sent.append(Sent(self.clock.monotonic(), self.clock.time(), order))

    async def __aenter__(self) -> Chain:
        self._tasks = [asyncio.create_task(self.engine.run(self.feed), name="drill.alarms"),
                       asyncio.create_task(self.desk.run(), name="drill.desk")]
        async with asyncio.timeout(5):
            while not self.engine.journal.is_open:
                await asyncio.sleep(0.001)
        await self.settle()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def send(self, point: str, value: int) -> None:
        await self.bus.publish(Reading("E1", point, value, Quality.GOOD, self.clock.time()))
        await self.settle()

    async def settle(self) -> None:
        await _settle(self.clock, self.engine.journal)

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await self.settle()

    def saved(self) -> list[WorkOrder]:
        """What the outbox keeps for a restart: the latest version of each open order."""
        return self.desk.open_orders

    def trail(self, origin: float) -> list[tuple[str, int, float]]:
        return [(s.order.event, s.level, s.mono - origin) for s in self.sent]


async def _settle(clock: FakeClock, journal: AlarmJournal) -> None:
    """Let woken tasks finish, journal writes on its worker thread included."""
    for _ in range(200):
        await clock.advance(0)
        if journal.inflight == 0:
            await clock.advance(0)
            if journal.inflight == 0:
                return
        await journal.wait_idle()
    raise AssertionError("the drill did not settle")


async def run_for(clock: FakeClock, advance: Callable[[float], Awaitable[None]], origin: float,
                  until: float, steps: Steps, *, tick: float = 1.0) -> None:
    """Advance ``tick`` by ``tick`` until ``origin + until``, stepping the wall clock by
    ``steps[offset]`` when monotonic time reaches ``origin + offset``."""
    pending = dict(steps)
    while clock.monotonic() - origin < until - 1e-9:
        offset = clock.monotonic() - origin
        for at in [a for a in pending if a <= offset + 1e-9]:
            clock.step_wall(pending.pop(at))
        await advance(tick)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def _parse(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


STEPS: dict[str, Steps] = {
    "forward-after-raise": {0: HOUR},
    "back-after-raise": {0: -HOUR},
    "forward-between-steps": {120: HOUR},
    "back-between-steps": {120: -HOUR},
    "forward-then-back": {30: HOUR, 600: -HOUR},
    "back-then-forward": {30: -HOUR, 600: HOUR},
}


# ---------------------------------------------------------------- the work-order ladder


@pytest.mark.parametrize("steps", STEPS.values(), ids=STEPS.keys())
async def test_p0_ladder_escalates_on_monotonic_time_whatever_the_wall_clock_does(
        tmp_path: Path, steps: Steps) -> None:
    clock = FakeClock()
    async with Chain(clock, tmp_path / "alarms.sqlite3") as chain:
        await chain.send("heartbeat", 1)
        await chain.send("trapped", 1)
        await chain.advance(30)
        [raised] = chain.sent
        origin = raised.mono
        await run_for(clock, chain.advance, origin, 2400, steps)
    assert chain.trail(origin) == LADDER
    # The ISO labels are wall time when they were computed: the deadlines were fixed at
    # raising, the escalation times show where the wall clock stood when they happened.
    for sent in chain.sent[1:]:
        assert sent.order.updated_at == _iso(sent.wall)
        assert sent.order.raised_at == raised.order.raised_at
    patrol = chain.sent[1].order.escalation
    assert patrol is not None and patrol.escalated_at == _iso(chain.sent[1].wall)
    assert patrol.deadline == _iso(raised.wall + 300), "the patrol has until 5 min after raising"


async def test_on_delay_and_stale_timer_count_monotonic_seconds(tmp_path: Path) -> None:
    """The 30 s entrapment on-delay and a 2 min heartbeat timeout, with the wall clock stepped
    an hour forward and then back while they run."""
    clock = FakeClock()
    async with Chain(clock, tmp_path / "alarms.sqlite3") as chain:
        await chain.send("heartbeat", 1)
        await chain.send("trapped", 1)
        origin = clock.monotonic()
        await run_for(clock, chain.advance, origin, 200, {10: HOUR, 60: -HOUR})
    assert [(e.rule_id, e.state, e.mono - origin) for e in chain.alarms] == [
        ("trapped", AlarmState.ACTIVE, 30.0), ("silent", AlarmState.ACTIVE, 120.0)]


# ---------------------------------------------------------------- alarm lifecycle timers


def journaled(rig: Rig, alarm_id: str, transition: Transition) -> list[float]:
    return [e.mono for e in rig.events if e.alarm_id == alarm_id and e.transition is transition]


async def drive(rig: Rig, origin: float, until: float, steps: Steps, *,
                tick: float = 1.0) -> None:
    await run_for(rig.clock, rig.advance, origin, until, steps, tick=tick)


ALARM_STEPS: dict[str, Steps] = {
    "forward": {60: HOUR},
    "back": {60: -HOUR},
    "back-then-forward": {60: -HOUR, 700: HOUR},
    "forward-then-back": {60: HOUR, 400: -HOUR},
}


@pytest.mark.parametrize("steps", ALARM_STEPS.values(), ids=ALARM_STEPS.keys())
async def test_timed_shelving_expires_after_its_duration(tmp_path: Path, steps: Steps) -> None:
    clock = FakeClock()
    async with Rig(clock, tmp_path / "alarms.sqlite3") as rig:
        origin = clock.monotonic()
        await rig.actions.shelve(FORCED, actor="op", reason="door propped", duration=600)
        await rig.on(FORCED)
        await drive(rig, origin, 900, steps)
    assert journaled(rig, FORCED, T.SHELVE_EXPIRED) == [origin + 600]
    assert rig.said(FORCED) == [("shelve_expired", "active")]


@pytest.mark.parametrize("steps", ALARM_STEPS.values(), ids=ALARM_STEPS.keys())
async def test_realarm_comes_every_realarm_after(tmp_path: Path, steps: Steps) -> None:
    clock = FakeClock()
    async with Rig(clock, tmp_path / "alarms.sqlite3") as rig:
        origin = clock.monotonic()
        await rig.on(HELD)  # realarm_after: 10m
        await drive(rig, origin, 1300, {300 + at: by for at, by in steps.items()})
    assert journaled(rig, HELD, T.REALARMED) == [origin + 600, origin + 1200]


@pytest.mark.parametrize("steps", ALARM_STEPS.values(), ids=ALARM_STEPS.keys())
async def test_unacknowledged_alarm_is_closed_an_hour_after_it_returned(
        tmp_path: Path, steps: Steps) -> None:
    clock = FakeClock()
    async with Rig(clock, tmp_path / "alarms.sqlite3") as rig:
        await rig.on(FORCED)
        await rig.off(FORCED)
        origin = clock.monotonic()
        await drive(rig, origin, 4000, {10 * at: by for at, by in steps.items()}, tick=10)
    assert journaled(rig, FORCED, T.CLOSED) == [origin + HOUR]


@pytest.mark.parametrize("step", [pytest.param((25, HOUR), id="forward-between-activations"),
                                  pytest.param((70, -HOUR), id="back-while-chattering")])
async def test_chatter_counts_and_ends_on_monotonic_time(tmp_path: Path,
                                                         step: tuple[float, float]) -> None:
    """Three activations within the 60 s chatter window make an alarm chatter; a whole window
    without one ends it."""
    clock = FakeClock()
    async with Rig(clock, tmp_path / "alarms.sqlite3") as rig:
        origin = clock.monotonic()

        async def flicker(seconds: float) -> None:
            offset = clock.monotonic() - origin
            if offset % 20 == 0 and offset <= 40:
                await rig.on(HELD)
            if offset % 20 == 5 and offset <= 45:
                await rig.off(HELD)
            await rig.advance(seconds)

        await run_for(clock, flicker, origin, 200, dict([step]))
    assert journaled(rig, HELD, T.CHATTERING) == [origin + 40]
    assert journaled(rig, HELD, T.CHATTER_ENDED) == [origin + 100]


@pytest.mark.parametrize("by", [HOUR, -HOUR], ids=["forward", "back"])
async def test_flood_window_slides_on_monotonic_time(tmp_path: Path, by: float) -> None:
    """12 new alarms in 12 s start a flood; it ends when fewer than 5 of the last 10 minutes'
    new alarms remain in the window, which a wall step must neither hasten nor delay."""
    clock = FakeClock()
    async with Rig(clock, tmp_path / "alarms.sqlite3", flood_site(12)) as rig:
        origin = clock.monotonic()
        for i in range(12):
            await rig.on(f"rp3@S{i:02d}")
            await rig.advance(1)
        assert rig.book.flood.flood_id is not None

        async def tick(seconds: float) -> None:
            if clock.monotonic() - origin == 200:
                await rig.on("rp1@S00")  # one more new alarm while flooded
            await rig.advance(seconds)

        await run_for(clock, tick, origin, 800, {100: by})
    # 13 alarms counted (at 0..11 s and 200 s): 4 remain once the one at 8 s leaves.
    ends = [e.mono for e in rig.announced if e.transition is T.FLOOD_ENDED]
    assert ends == [origin + 608]


# ---------------------------------------------------------------- restarts


async def _ladder_across_a_restart(tmp_path: Path, before: Steps, restart_at: float,
                                   after: Steps) -> tuple[list[tuple[str, int, float]], float]:
    """Raise a P0 order, restart the gateway (alarm journal and saved orders) at
    ``restart_at`` s; the trail of every order sent, by seconds after raising."""
    clock = FakeClock()
    path = tmp_path / "alarms.sqlite3"
    async with Chain(clock, path) as first:
        await first.send("heartbeat", 1)
        await first.send("trapped", 1)
        await first.advance(30)
        origin = first.sent[0].mono
        await run_for(clock, first.advance, origin, restart_at, before)
        saved = first.saved()
    async with Chain(clock, path, restore=saved) as second:
        await run_for(clock, second.advance, origin, 2400,
                      {at: by for at, by in after.items() if at >= restart_at})
    return first.trail(origin) + second.trail(origin), restart_at


@pytest.mark.parametrize("by", [HOUR, -HOUR], ids=["forward", "back"])
async def test_after_a_restart_the_ladder_goes_on_in_monotonic_time(tmp_path: Path,
                                                                    by: float) -> None:
    """The restarted desk derives where the order stands from its saved wall instants once,
    then counts monotonic time: a later step changes nothing."""
    trail, _ = await _ladder_across_a_restart(tmp_path, {}, 30, {40: by})
    assert trail == LADDER


async def test_a_wall_clock_behind_at_restart_restarts_the_ladder_at_worst(
        tmp_path: Path) -> None:
    """Stepped back an hour before the restart, the wall clock says the order was raised in
    the future: the restarted desk counts its windows from the restart, not an hour late."""
    trail, restart = await _ladder_across_a_restart(tmp_path, {20: -HOUR}, 30, {})
    assert trail == [LADDER[0], *((e, lvl, restart + t) for e, lvl, t in LADDER[1:])]


async def test_a_wall_clock_ahead_at_restart_is_believed(tmp_path: Path) -> None:
    """The documented limit: across a restart only the wall clock is left, so an hour's step
    forward just before it makes the restored order an hour older (it catches up at once)."""
    trail, restart = await _ladder_across_a_restart(tmp_path, {20: HOUR}, 30, {})
    assert trail[0] == LADDER[0]
    assert {t for _, _, t in trail[1:]} == {restart}
    assert trail[-3:] == [("escalated", 4, restart), ("unacknowledged", 4, restart),
                          ("pre_alert", 4, restart)]


async def test_shelving_restored_after_a_step_lasts_at_most_its_duration(
        tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "alarms.sqlite3"
    async with Rig(clock, path) as rig:
        await rig.on(FORCED)
        origin = clock.monotonic()
        await rig.actions.shelve(FORCED, actor="op", reason="door propped", duration=600)
        await drive(rig, origin, 120, {60: -HOUR})
    async with Rig(clock, path) as restarted:
        await drive(restarted, origin, 1000, {})
    # The wall clock says 68 min are left; a 10 min shelving cannot have more than 10.
    assert journaled(restarted, FORCED, T.SHELVE_EXPIRED) == [origin + 120 + 600]


async def test_shelving_restored_then_stepped_expires_on_time(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "alarms.sqlite3"
    async with Rig(clock, path) as rig:
        await rig.on(FORCED)
        origin = clock.monotonic()
        await rig.actions.shelve(FORCED, actor="op", reason="door propped", duration=600)
        await drive(rig, origin, 60, {})
    async with Rig(clock, path) as restarted:
        await drive(restarted, origin, 1000, {100: -HOUR, 300: HOUR / 2})
    assert journaled(restarted, FORCED, T.SHELVE_EXPIRED) == [origin + 600]


# ---------------------------------------------------------------- the whole gateway


class Watcher:
    """An observer of the gateway: work orders with the monotonic time they were sent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.alarms: list[AlarmEvent] = []
        self.sent: list[Sent] = []

    def alarm(self, event: AlarmEvent) -> None:
        self.alarms.append(event)

    def work_order(self, order: WorkOrder) -> None:
        self.sent.append(Sent(self.clock.monotonic(), self.clock.time(), order))


def gateway_config(tmp_path: Path, port: int) -> GatewayConfig:
    return load_config_text(f"""
site: {{id: s1, name: 测试小区, gateway_id: gw1}}
state_dir: {tmp_path / "state"}
brokers:
  devices: {{host: 127.0.0.1, port: {port}}}
devices:
  - {{id: E1, name: 1号梯, driver: mqtt, kind: elevator, location: {{building: "1"}},
     points: [{{name: trapped, topic: dev/E1/trapped, type: int}}]}}
rules:
  - {{id: trapped, devices: [E1], for: 30s, when: {{point: trapped, eq: 1}},
     category: elevator_entrapment, priority: P0, message: {{zh: 困人, en: trapped}}}}
""")


@pytest.mark.mosquitto
async def test_gateway_raises_and_escalates_on_time_across_wall_steps(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """An entrapment reported over MQTT; the wall clock jumps an hour forward during the
    on-delay and back again after the order is raised."""
    clock = FakeClock()
    watcher = Watcher(clock)
    gateway = Gateway(gateway_config(tmp_path, mosquitto.port), clock=clock,
                      observers=[watcher])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(gateway.run(shutdown_trigger=stop.wait), name="drill.gateway")
        try:
            async with asyncio.timeout(10):
                await gateway.started.wait()
                while gateway.drivers[0].health().counters["subscribed"] < 1:
                    await asyncio.sleep(0.01)
                await publish(mosquitto.port, "dev/E1/trapped", "1")
                while gateway.engine.evaluations < 1:
                    await asyncio.sleep(0.01)

            async def advance(seconds: float) -> None:
                await clock.advance(seconds)
                await _settle(clock, gateway.engine.journal)

            origin = clock.monotonic()
            wall0 = clock.time()
            await run_for(clock, advance, origin, 400, {10: HOUR, 50: -HOUR})
        finally:
            stop.set()
    sent = [(s.order.event, s.level, s.mono - origin) for s in watcher.sent]
    expected = [("raised", 1, 30.0), ("escalated", 2, 90.0), ("escalated", 3, 330.0)]
    REPORT.append(DrillRow(
        "wall clock stepped +1 h, then -1 h (NTP) around a P0 order: updates on time",
        tried=2, lost=len([e for e in expected if e not in sent]),
        duplicated=len(sent) - len(set(sent)),
        second_orders=len({s.order.id for s in watcher.sent}) - 1, tracebacks=None,
        health_honest=None))
    assert sent == expected
    raised = watcher.sent[0].order
    assert _parse(raised.raised_at) == pytest.approx(wall0 + HOUR + 30), \
        "raised_at is the wall time at raising: it shows the forward step"
    assert _parse(raised.respond_by) - _parse(raised.raised_at) == pytest.approx(300)
    patrol = watcher.sent[1].order.escalation
    assert patrol is not None and patrol.escalated_at is not None
    assert _parse(patrol.escalated_at) == pytest.approx(wall0 + 90), \
        "escalated_at is the wall time at escalating: the step back shows too"
