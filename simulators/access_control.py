"""A simulated access control controller (门禁控制器) and its doors, reporting over MQTT.

Each door has a contact (open/closed) and a lock (locked/unlocked) and belongs to a fire zone.
Card reads are valid, invalid (unregistered), expired or without the right for this door; a
valid card unlocks the door for ``unlock_time`` s and, when someone walks through, the door
opens and closes again ``pass_time`` s later and relocks. A door opened while locked is forced;
a door open longer than ``held_open_after`` s is held open. ``auth_fail_limit`` failures at one
reader within ``auth_fail_window`` s raise the controller's repeated-failure alarm. With
anti-passback on, a card that entered cannot enter again before it has left. Tamper (reader or
enclosure), duress, AC power and battery events complete the set.

**Fire release.** Like a real controller wired to the fire linkage output (GB 50116-2013
§4.10.3, GB 55024-2022 §5.3.6), ``fire_signal`` with a zone unlocks every door of that zone and
keeps it unlocked until the signal clears. The fault ``stuck_locked`` makes a door's lock stay
engaged whatever it is told: it then still reports ``locked`` during a fire, which is what the
gateway must alarm on (docs/facility-rules.md#fire-alarm-actions).

Event codes (docs/facility-rules.md#access-control; Hikvision ``NET_DVR`` ACS major/minor types
and ZKTeco C3 event types checked against their public SDK constant lists). ``zk_event`` is null
where ZKTeco has no such event:

====================== ========== ========= ========= ==========================================
event                  hik_major  hik_minor zk_event  when
====================== ========== ========= ========= ==========================================
card_valid             0x5        0x01      0         valid card: unlock
card_no_right          0x5        0x06      23        card has no right for this door
card_expired           0x5        0x08      29        card out of date
card_invalid           0x5        0x09      27        unregistered card
anti_passback          0x5        0x0a      24        card entering twice
exit_button            0x5        0x17      202       request to exit: unlock
door_opened            0x5        0x19      200       door opened after an unlock
door_closed            0x5        0x1a      201       door closed
door_forced            0x5        0x1b      102       door opened while locked
door_held_open         0x5        0x1c      28        open longer than ``held_open_after``
card_max_auth_fail     0x1        0x40c     null      ``auth_fail_limit`` failures in the window
tamper                 0x1        0x406     100       reader tamper (controller: 0x404)
tamper_restored        0x1        0x407     null      (controller: 0x405)
duress                 0x1        0x40a     101       duress card/code: door opens, silent alarm
fire_input             0x1        0x415     null      fire signal for the door's zone: release
fire_input_restored    0x1        0x417     null      fire signal cleared: relock
ac_power_off           0x2        0x405     null      controller lost mains (on battery)
ac_power_restored      0x2        0x406     null
battery_low            0x2        0x403     null
battery_restored       0x2        0x404     null
====================== ========== ========= ========= ==========================================

Topics (``<p>`` = ``topic_prefix``, default ``acs``; ``<door>`` = door name, unique on the
broker; ``<ctrl>`` = the simulator's name). ``config/profiles/access-door-mqtt.yaml`` is the
gateway's copy of the door topics.

================================== ======== =============================================
topic                              retained payload (JSON; ``ts`` = device time, epoch ms)
================================== ======== =============================================
<p>/<door>/state                   yes      ``door``, ``controller``, ``zone``, ``contact``
                                            (``open``/``closed``), ``open``, ``lock``
                                            (``locked``/``unlocked``), ``locked``,
                                            ``alarm`` (``forced_open`` > ``held_open`` >
                                            ``tamper`` > ``none``), ``forced``, ``held``,
                                            ``tamper``, ``fire_release``, ``ts``
<p>/<door>/event                   no       ``seq``, ``event``, ``card`` ("" if none),
                                            ``door``, ``controller``, ``zone``,
                                            ``hik_major``, ``hik_minor``, ``zk_event``,
                                            ``ts``
<p>/controller/<ctrl>/event        no       controller events (enclosure tamper, power,
                                            battery) with ``door`` = "" and ``zone`` = 0
<p>/controller/<ctrl>/heartbeat    no       every ``heartbeat`` s: ``controller``,
                                            ``seq``, ``doors``, ``uptime_s``,
                                            ``ac_power``, ``battery_low``, ``tamper``,
                                            ``ts``
<p>/controller/<ctrl>/availability yes      ``online`` / ``offline`` (plain text; the will)
<p>/<ctrl>/cmd, <p>/<ctrl>/cmd/... no       interactive commands and their results (see
                                            :mod:`simulators.mqtt_sim`)
================================== ======== =============================================

Door states are published on every change, every heartbeat and every reconnect. To watch the
controller's heartbeat (missed 3 intervals → P2, docs/facility-rules.md#access-control), add
a device such as::

    - id: "acs-{ctrl}"
      driver: mqtt
      kind: access_controller
      stale_after: 90s            # 3 x the 30 s heartbeat
      points:
        - {name: heartbeat_seq, topic: "acs/controller/{ctrl}/heartbeat", path: seq,
           type: int, timestamp_path: ts}
        - {name: ac_power, topic: "acs/controller/{ctrl}/heartbeat", path: ac_power,
           type: bool, timestamp_path: ts}
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gateway.clock import Clock
from simulators.base import Action, ActionError
from simulators.mqtt_sim import MqttSim, param_bool, param_choice, param_int

__all__ = ["EVENT_CODES", "AccessControlModel", "AccessControlSim", "Door"]

log = logging.getLogger(__name__)

#: event -> (Hikvision major type, Hikvision minor type, ZKTeco event type or None).
EVENT_CODES: dict[str, tuple[int, int, int | None]] = {
    "card_valid": (0x5, 0x01, 0),
    "card_no_right": (0x5, 0x06, 23),
    "card_expired": (0x5, 0x08, 29),
    "card_invalid": (0x5, 0x09, 27),
    "anti_passback": (0x5, 0x0A, 24),
    "exit_button": (0x5, 0x17, 202),
    "door_opened": (0x5, 0x19, 200),
    "door_closed": (0x5, 0x1A, 201),
    "door_forced": (0x5, 0x1B, 102),
    "door_held_open": (0x5, 0x1C, 28),
    "card_max_auth_fail": (0x1, 0x40C, None),
    "tamper": (0x1, 0x406, 100),
    "tamper_restored": (0x1, 0x407, None),
    "controller_tamper": (0x1, 0x404, 100),
    "controller_tamper_restored": (0x1, 0x405, None),
    "duress": (0x1, 0x40A, 101),
    "fire_input": (0x1, 0x415, None),
    "fire_input_restored": (0x1, 0x417, None),
    "ac_power_off": (0x2, 0x405, None),
    "ac_power_restored": (0x2, 0x406, None),
    "battery_low": (0x2, 0x403, None),
    "battery_restored": (0x2, 0x404, None),
}

CARD_RESULTS = ("valid", "invalid", "expired", "no_right")


@dataclass
class Door:
    """One door: contact, lock, alarms, and the timers that move them."""

    name: str
    zone: int
    open: bool = False
    locked: bool = True
    forced: bool = False
    held: bool = False
    tamper: bool = False
    fire_release: bool = False
    #: A mechanical fault the controller cannot see: the lock stays engaged.
    stuck_locked: bool = False
    open_for: float = 0.0
    unlock_left: float | None = None
    close_in: float | None = None
    inside: set[str] = field(default_factory=set)
    failures: collections.deque[float] = field(default_factory=collections.deque)

    @property
    def alarm(self) -> str:
        if self.forced:
            return "forced_open"
        if self.held:
            return "held_open"
        return "tamper" if self.tamper else "none"


@dataclass
class AccessControlModel:
    """A controller's doors and rules; actions queue events in :attr:`events`."""

    doors: dict[str, Door]
    unlock_time: float = 5.0
    pass_time: float = 2.0
    held_open_after: float = 30.0
    auth_fail_limit: int = 5
    auth_fail_window: float = 60.0
    anti_passback: bool = True
    tamper: bool = False
    ac_power: bool = True
    battery_low: bool = False
    time: float = 0.0
    #: (event, door name or None for the controller, card or ""), oldest first.
    events: list[tuple[str, str | None, str]] = field(default_factory=list)

    def _event(self, event: str, door: Door | None, card: str = "") -> None:
        self.events.append((event, door.name if door else None, card))

    # -- the lock

    def unlock(self, door: Door, seconds: float | None) -> bool:
        """Release the lock (for ``seconds``, or until told otherwise); False if it is stuck."""
        door.unlock_left = seconds
        if door.stuck_locked:
            door.locked = True
            return False
        door.locked = False
        return True

    def relock(self, door: Door) -> None:
        if not door.fire_release:
            door.locked, door.unlock_left = True, None

    # -- the contact

    def open_door(self, door: Door, *, closes_after: float | None = None) -> None:
        if door.open:
            return
        door.open, door.open_for, door.close_in = True, 0.0, closes_after
        if door.locked:
            door.forced = True
            self._event("door_forced", door)
        else:
            self._event("door_opened", door)

    def close_door(self, door: Door) -> None:
        if not door.open:
            return
        door.open, door.forced, door.held, door.close_in = False, False, False, None
        self._event("door_closed", door)
        self.relock(door)

    # -- credentials

    def card(self, door: Door, card: str, result: str, *, direction: str = "in",
             passes: bool = True) -> str:
        """A card is presented at the door's reader; returns the event it caused."""
        if result == "valid":
            if self.anti_passback and direction == "in" and card in door.inside:
                self._event("anti_passback", door, card)
                return "anti_passback"
            self._event("card_valid", door, card)
            if direction == "in":
                door.inside.add(card)
            else:
                door.inside.discard(card)
            if self.unlock(door, self.unlock_time) and passes:
                self.open_door(door, closes_after=self.pass_time)
            return "card_valid"
        event = f"card_{result}"
        self._event(event, door, card)
        door.failures.append(self.time)
        while door.failures and self.time - door.failures[0] > self.auth_fail_window:
            door.failures.popleft()
        if len(door.failures) >= self.auth_fail_limit:
            door.failures.clear()
            self._event("card_max_auth_fail", door, card)
        return event

    def duress(self, door: Door, card: str) -> None:
        """A duress card or code: the door opens as usual and the controller alarms silently."""
        self._event("duress", door, card)
        if self.unlock(door, self.unlock_time):
            self.open_door(door, closes_after=self.pass_time)

    def exit_request(self, door: Door) -> bool:
        """Exit button: unlock and open; the door stays open until closed."""
        self._event("exit_button", door)
        if not self.unlock(door, self.unlock_time):
            return False
        self.open_door(door)
        return True

    # -- fire

    def fire_signal(self, zone: int, active: bool) -> list[Door]:
        """The fire linkage tells the controller that ``zone`` is (no longer) in fire."""
        doors = [d for d in self.doors.values() if d.zone == zone]
        for door in doors:
            if door.fire_release == active:
                continue
            door.fire_release = active
            if active:
                self._event("fire_input", door)
                self.unlock(door, None)
            else:
                self._event("fire_input_restored", door)
                if not door.open:
                    self.relock(door)
        return doors

    def set_stuck(self, door: Door, on: bool) -> None:
        door.stuck_locked = on
        if on:
            door.locked = True
        elif door.fire_release or door.unlock_left is not None:
            door.locked = False

    # -- time

    def step(self, dt: float) -> None:
        """Run unlock, walk-through and held-open timers."""
        self.time += dt
        for door in self.doors.values():
            if door.unlock_left is not None:
                door.unlock_left -= dt
                if door.unlock_left <= 0:
                    door.unlock_left = None
                    if not door.open:
                        self.relock(door)
            if not door.open:
                continue
            door.open_for += dt
            if door.close_in is not None:
                door.close_in -= dt
                if door.close_in <= 0:
                    self.close_door(door)
                    continue
            if not door.held and not door.fire_release and self.held_open_after > 0 \
                    and door.open_for >= self.held_open_after:
                door.held = True
                self._event("door_held_open", door)


class AccessControlSim(MqttSim):
    """An :class:`AccessControlModel` publishing over MQTT (see the module docstring).

    Args:
        name: Controller id, e.g. ``AC1``.
        host: Broker host.
        port: Broker port.
        topic_prefix: First topic level(s).
        doors: A count (doors ``<name>-D1``... in zone 1), door names (zone 1), or a mapping
            door name -> fire zone.
        seed: Card numbers and random traffic repeat with the same seed.
        heartbeat: Seconds between heartbeats (and full door state reports).
        unlock_time: Seconds a valid card unlocks the door.
        pass_time: Seconds a person takes to walk through (the door then closes).
        held_open_after: Held-open threshold in seconds (``byMagneticAlarmTimeout``); 0 = off.
        auth_fail_limit: Failed reads at one reader that raise ``card_max_auth_fail``.
        auth_fail_window: ...within this many seconds.
        anti_passback: Refuse a card entering twice without leaving.
        traffic: Random valid card passes, about one per ``traffic_interval`` s.
        traffic_interval: Mean seconds between random passes.
        tick: Seconds between timer steps.
        clock: Time source (default: the real clock).
        **link: Passed to :class:`~simulators.mqtt_sim.MqttSim`.

    Raises:
        ValueError: An impossible argument (no doors, a door name that is not one topic
            level, a non-positive time).
    """

    kind: ClassVar[str] = "access_control"
    malformed_params: ClassVar[dict[str, str]] = {
        "door": "door whose state topic to break (default: the first door)"}

    def __init__(self, name: str, *, host: str, port: int, topic_prefix: str = "acs",
                 doors: int | Sequence[str] | Mapping[str, int] = 2, seed: int = 0,
                 heartbeat: float = 30.0, unlock_time: float = 5.0, pass_time: float = 2.0,
                 held_open_after: float = 30.0, auth_fail_limit: int = 5,
                 auth_fail_window: float = 60.0, anti_passback: bool = True,
                 traffic: bool = False, traffic_interval: float = 20.0, tick: float = 0.1,
                 clock: Clock | None = None, **link: Any) -> None:
        super().__init__(name, host=host, port=port, topic_prefix=topic_prefix, seed=seed,
                         heartbeat=heartbeat, tick=tick, clock=clock, **link)
        zones = _door_zones(name, doors)
        if unlock_time <= 0 or pass_time <= 0 or held_open_after < 0 or traffic_interval <= 0:
            raise ValueError("unlock_time, pass_time and traffic_interval must be > 0, "
                             "held_open_after >= 0")
        if auth_fail_limit < 1 or auth_fail_window <= 0:
            raise ValueError("auth_fail_limit must be >= 1 and auth_fail_window > 0")
        self.model = AccessControlModel(
            {d: Door(d, z) for d, z in zones.items()}, unlock_time=unlock_time,
            pass_time=pass_time, held_open_after=held_open_after,
            auth_fail_limit=auth_fail_limit, auth_fail_window=auth_fail_window,
            anti_passback=anti_passback)
        self.traffic = traffic
        self.traffic_interval = traffic_interval
        self._cards = [f"{self.rng.getrandbits(32):08X}" for _ in range(50)]
        self._seq = 0
        self._beats = 0
        self._last_events: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ topics

    def state_topic(self, door: str) -> str:
        return f"{self.topic_prefix}/{door}/state"

    def event_topic(self, door: str | None) -> str:
        """A door's event topic, or the controller's for ``None``."""
        if door is None:
            return f"{self.topic_prefix}/controller/{self.name}/event"
        return f"{self.topic_prefix}/{door}/event"

    @property
    def heartbeat_topic(self) -> str:
        return f"{self.topic_prefix}/controller/{self.name}/heartbeat"

    @property
    def availability_topic(self) -> str:
        return f"{self.topic_prefix}/controller/{self.name}/availability"

    # ------------------------------------------------------------------ payloads

    def door_body(self, name: str) -> dict[str, Any]:
        """Door ``name``'s state payload now, without ``ts``."""
        d = self.model.doors[name]
        return {"door": d.name, "controller": self.name, "zone": d.zone,
                "contact": "open" if d.open else "closed", "open": d.open,
                "lock": "locked" if d.locked else "unlocked", "locked": d.locked,
                "alarm": d.alarm, "forced": d.forced, "held": d.held, "tamper": d.tamper,
                "fire_release": d.fire_release}

    def _state_bodies(self) -> dict[str, dict[str, Any]]:
        return {self.state_topic(name): self.door_body(name) for name in self.model.doors}

    def _device_snapshot(self) -> dict[str, Any]:
        m = self.model
        return {
            "name": self.name, "kind": self.kind,
            "controller": {"ac_power": m.ac_power, "battery_low": m.battery_low,
                           "tamper": m.tamper, "heartbeats": self._beats},
            "doors": {name: {**self.door_body(name), "stuck_locked": d.stuck_locked}
                      for name, d in m.doors.items()},
            "last_events": dict(self._last_events),
        }

    def _malformed_target(self, params: Mapping[str, Any]) -> tuple[str, str]:
        door = self._door(params) if "door" in params else next(iter(self.model.doors.values()))
        return self.state_topic(door.name), "locked"

    def _on_heartbeat(self) -> None:
        m = self.model
        self._beats += 1
        self.publish_event(self.heartbeat_topic, {
            "controller": self.name, "seq": self._beats, "doors": len(m.doors),
            "uptime_s": round(m.time), "ac_power": m.ac_power, "battery_low": m.battery_low,
            "tamper": m.tamper})

    # ------------------------------------------------------------------ time

    def _step(self, dt: float) -> None:
        if self.traffic and self.rng.random() < dt / self.traffic_interval:
            idle = [d for d in self.model.doors.values()
                    if not d.open and d.locked and not d.fire_release]
            if idle:
                door = self.rng.choice(idle)
                card = self.rng.choice(self._cards)
                self.model.card(door, card, "valid",
                                direction="out" if card in door.inside else "in")
        self.model.step(dt)  # its events go out with the state sync that follows

    def _sync_state(self) -> None:
        for event, door_name, card in self.model.events:
            self._seq += 1
            hik_major, hik_minor, zk = EVENT_CODES[event]
            door = self.model.doors[door_name] if door_name else None
            body = {"seq": self._seq, "event": event, "card": card,
                    "door": door_name or "", "controller": self.name,
                    "zone": door.zone if door else 0, "hik_major": hik_major,
                    "hik_minor": hik_minor, "zk_event": zk}
            self._last_events[door_name or ""] = body
            self.publish_event(self.event_topic(door_name), body)
        self.model.events.clear()
        super()._sync_state()

    # ------------------------------------------------------------------ actions

    def _device_actions(self) -> list[Action]:
        return list(_ACTIONS)

    def _apply_device(self, action: str, params: Mapping[str, Any]) -> str:
        m = self.model
        if action == "card":
            door = self._door(params)
            result = param_choice(params, "result", CARD_RESULTS, "valid")
            direction = param_choice(params, "direction", ("in", "out"), "in")
            card = self._card(params)
            event = m.card(door, card, result, direction=direction,
                           passes=param_bool(params, "pass", True))
            stuck = " (lock stuck: stays locked)" if door.stuck_locked and event == \
                "card_valid" else ""
            return f"{door.name}: card {card} -> {event}{stuck}"
        if action == "invalid_card_burst":
            door = self._door(params)
            result = param_choice(params, "result", CARD_RESULTS[1:], "invalid")
            count = param_int(params, "count", m.auth_fail_limit)
            if not 1 <= count <= 100:
                raise ActionError("parameter 'count' must be 1..100")
            card = self._card(params)
            for _ in range(count):
                m.card(door, card, result)
            return f"{door.name}: {count} x card_{result}"
        if action == "anti_passback":
            door = self._door(params)
            card = self._card(params)
            door.inside.add(card)
            m.card(door, card, "valid", direction="in")
            return f"{door.name}: card {card} refused (anti-passback)"
        if action == "exit":
            door = self._door(params)
            ok = m.exit_request(door)
            return f"{door.name}: exit button, door {'open' if ok else 'stuck locked'}"
        if action == "forced_open":
            door = self._door(params)
            m.open_door(door)
            return f"{door.name}: opened {'by force' if door.forced else '(it was unlocked)'}"
        if action == "open":
            door = self._door(params)
            if door.locked and not door.open and not m.unlock(door, m.unlock_time):
                return f"{door.name}: lock stuck, door stays shut"
            m.open_door(door)
            return f"{door.name}: open (held-open alarm after {m.held_open_after:g} s)"
        if action == "close":
            door = self._door(params)
            m.close_door(door)
            return f"{door.name}: closed, {'locked' if door.locked else 'unlocked'}"
        return self._apply_alarm_action(action, params)

    def _apply_alarm_action(self, action: str, params: Mapping[str, Any]) -> str:
        m = self.model
        if action == "duress":
            door = self._door(params)
            m.duress(door, self._card(params))
            return f"{door.name}: duress, door opens, silent alarm"
        if action == "tamper":
            on = param_bool(params, "on", True)
            if "door" in params:
                door = self._door(params)
                if door.tamper != on:
                    door.tamper = on
                    m.events.append(("tamper" if on else "tamper_restored", door.name, ""))
                return f"{door.name}: reader tamper {'on' if on else 'restored'}"
            if m.tamper != on:
                m.tamper = on
                m.events.append(("controller_tamper" if on else "controller_tamper_restored",
                                 None, ""))
            return f"controller enclosure tamper {'on' if on else 'restored'}"
        if action == "fire_signal":
            zone = param_int(params, "zone")
            active = param_bool(params, "active", True)
            doors = m.fire_signal(zone, active)
            if not doors:
                return f"no door in zone {zone}"
            stuck = [d.name for d in doors if d.locked and active]
            state = "released" if active else "back to normal"
            return (f"zone {zone} fire signal {'on' if active else 'off'}: "
                    f"{', '.join(d.name for d in doors)} {state}"
                    + (f"; still locked: {', '.join(stuck)}" if stuck else ""))
        if action == "stuck_locked":
            door = self._door(params)
            m.set_stuck(door, param_bool(params, "on", True))
            return f"{door.name}: lock {'stuck locked' if door.stuck_locked else 'works'}"
        if action in ("ac_power", "battery_low"):
            on = param_bool(params, "on", True)
            if getattr(m, action) != on:
                setattr(m, action, on)
                event = {("ac_power", False): "ac_power_off",
                         ("ac_power", True): "ac_power_restored",
                         ("battery_low", True): "battery_low",
                         ("battery_low", False): "battery_restored"}[(action, on)]
                m.events.append((event, None, ""))
            return f"{action.replace('_', ' ')}: {'yes' if on else 'no'}"
        if action == "traffic":
            self.traffic = param_bool(params, "on", True)
            return f"random traffic {'on' if self.traffic else 'off'}"
        raise ActionError(f"access_control has no action {action!r}; try: "
                          f"{', '.join(a.name for a in self.actions())}")

    def _door(self, params: Mapping[str, Any]) -> Door:
        if "door" not in params:
            raise ActionError(f"parameter 'door' is required; doors: "
                              f"{', '.join(self.model.doors)}")
        door = self.model.doors.get(str(params["door"]))
        if door is None:
            raise ActionError(f"no door {params['door']!r}; doors: "
                              f"{', '.join(self.model.doors)}")
        return door

    def _card(self, params: Mapping[str, Any]) -> str:
        return str(params["card"]) if "card" in params else self.rng.choice(self._cards)


def _door_zones(name: str, doors: int | Sequence[str] | Mapping[str, int]) -> dict[str, int]:
    if isinstance(doors, str):
        doors = [doors]
    if isinstance(doors, int):
        if doors < 1:
            raise ValueError("an access controller needs at least one door")
        zones = {f"{name}-D{i}": 1 for i in range(1, doors + 1)}
    elif isinstance(doors, Mapping):
        zones = {str(k): int(v) for k, v in doors.items()}
    else:
        zones = {str(d): 1 for d in doors}
    if not zones:
        raise ValueError("an access controller needs at least one door")
    for door in zones:
        if not door or any(c in door for c in "/+#") or door == "controller":
            raise ValueError(f"door name {door!r} must be one topic level (no '/', '+', '#') "
                             f"and not 'controller'")
    return zones


_DOOR = {"door": "door name"}
_CARD = {"card": "card number (default: a seeded random one)"}

_ACTIONS = [
    Action("card", "present a card at the door's reader",
           {**_DOOR, "result": "valid | invalid | expired | no_right (default valid)", **_CARD,
            "direction": "in | out (default in; anti-passback)",
            "pass": "true|false: someone walks through after a valid read (default true)"}),
    Action("invalid_card_burst", "repeated failed reads (≥ auth_fail_limit raises "
                                 "card_max_auth_fail)",
           {**_DOOR, "count": "reads (default auth_fail_limit)",
            "result": "invalid | expired | no_right (default invalid)", **_CARD}),
    Action("anti_passback", "a card that already entered tries to enter again", {**_DOOR,
                                                                                 **_CARD}),
    Action("exit", "exit button: unlock and open; stays open until close", _DOOR),
    Action("open", "door opened and left open (held-open alarm after held_open_after)",
           _DOOR),
    Action("close", "door closes (and relocks unless fire-released)", _DOOR),
    Action("forced_open", "door opened while locked (door forced)", _DOOR),
    Action("duress", "duress card/code: the door opens and a silent alarm goes out",
           {**_DOOR, **_CARD}),
    Action("tamper", "reader tamper (with door) or controller enclosure tamper",
           {"door": "door name (default: the controller)", "on": "true|false (default true)"}),
    Action("fire_signal", "fire linkage input for a zone: its doors unlock and stay unlocked",
           {"zone": "fire zone", "active": "true|false (default true)"}),
    Action("stuck_locked", "fault: the door's lock stays engaged (also on fire release)",
           {**_DOOR, "on": "true|false (default true)"}),
    Action("ac_power", "controller mains power", {"on": "true|false (default true)"}),
    Action("battery_low", "controller backup battery low", {"on": "true|false (default true)"}),
    Action("traffic", "random valid card passes on/off", {"on": "true|false (default true)"}),
]
