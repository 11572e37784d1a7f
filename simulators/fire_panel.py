"""A simulated fire alarm control panel (火灾报警控制器) that reports over MQTT.

It models a controller with zones of detectors. A detector can be in fire (火警), pre-alarm
(预警, vendor-specific), supervisory (监管), fault (故障) or disabled (屏蔽); a zone's linkage
output can be in delay (延时), started (启动) and confirmed by feedback (反馈). The controller
adds main-power, backup-power and bus faults, manual/automatic mode, test mode, configuration
changes, and the operator's reset and silence. In automatic mode a fire starts the zone's
linkage: delay for ``linkage_delay`` s, then start, then feedback ``feedback_after`` s later.

Status words follow GB/T 26875.3-2011 (docs/facility-rules.md#fire-panel-status-bits; bit
meanings checked against github.com/shootingfans/codec_gb26875_3_2011 ``constant/type.go``):
bit 0 is *set* in normal operation and clear in test mode, bit 5 is set while started, bit 11 is
set in manual mode.

Topics (``<p>`` = ``topic_prefix``, default ``fire``; ``<panel>`` = the simulator's name). This
table is the documented layout; ``config/profiles/fire-panel-mqtt.yaml`` (the controller) and
``fire-panel-zone-mqtt.yaml`` (one device per zone) are the gateway's copy of it.

======================== ======== ========================================================
topic                    retained payload (JSON; ``ts`` = device time, epoch ms)
======================== ======== ========================================================
<p>/<panel>/controller   yes      ``status_word`` (bits in CONTROLLER_BITS), one boolean per
                                  bit (``running_normal``, ``fire``, ``fault``, ``disabled``,
                                  ``supervisory``, ``start``, ``feedback``, ``delay``,
                                  ``main_power_fault``, ``backup_power_fault``,
                                  ``bus_fault``, ``manual``, ``config_changed``, ``reset``),
                                  ``prealarm`` and ``silenced`` (not GB bits), ``fire_zone``
                                  (first zone in fire, 0 none), ``fire_zones`` (list),
                                  ``panel``, ``ts``
<p>/<panel>/zone/<n>     yes      ``zone``, ``state`` (fire > prealarm > delay > start >
                                  feedback > supervisory > fault > disabled > normal),
                                  ``status`` (component word, COMPONENT_BITS), one boolean per
                                  bit (``running_normal`` ... ``power_fault``), ``prealarm``,
                                  ``alarm_detector`` (first detector in fire, 0 none),
                                  ``detectors`` (``[{detector, state, status}]``), ``panel``,
                                  ``ts``
<p>/<panel>/event        no       every change and operator action: ``seq``, ``event`` (fire,
                                  prealarm, supervisory, fault, restore, disabled, enabled,
                                  delay, start, feedback, stop, main_power_fault,
                                  main_power_restored, backup_power_*, bus_*, zone_power_*,
                                  mode_manual, mode_auto, self_test, test_end,
                                  config_changed, reset, silence, acknowledge), ``zone`` and
                                  ``detector`` (0 = the controller / none), ``operation``
                                  (GB/T 26875.3 operation flags, OPERATION_BITS; 0 unless an
                                  operator action), ``operator_action``, ``panel``, ``ts``
<p>/<panel>/availability yes      ``online`` / ``offline`` (plain text; ``offline`` is the will)
<p>/<panel>/cmd          no       commands in: ``{"action": "fire", "params": {"zone": 3}}``
<p>/<panel>/cmd/result   no       ``{"ok", "action", "result" | "error", "id", "ts"}``
======================== ======== ========================================================

State topics are published on every change, on every heartbeat (``heartbeat`` s, default 30)
and on every reconnect, so a gateway's ``stale_after`` notices a silent panel.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gateway.clock import Clock
from simulators.base import Action, ActionError
from simulators.mqtt_sim import MqttSim, param_bool, param_choice, param_float, param_int

__all__ = [
    "COMPONENT_BITS",
    "CONTROLLER_BITS",
    "OPERATION_BITS",
    "Detector",
    "FirePanelModel",
    "FirePanelSim",
    "Zone",
    "ZoneState",
]

log = logging.getLogger(__name__)

#: GB/T 26875.3-2011 controller status word: payload field -> bit (0 = least significant).
CONTROLLER_BITS: dict[str, int] = {
    "running_normal": 0,  # clear: test mode
    "fire": 1,
    "fault": 2,
    "disabled": 3,
    "supervisory": 4,
    "start": 5,  # clear: stopped
    "feedback": 6,
    "delay": 7,
    "main_power_fault": 8,
    "backup_power_fault": 9,
    "bus_fault": 10,
    "manual": 11,  # clear: automatic
    "config_changed": 12,
    "reset": 13,
}

#: GB/T 26875.3-2011 component (部件) status, bits 0-8; used for zones and detectors.
COMPONENT_BITS: dict[str, int] = {
    "running_normal": 0,
    "fire": 1,
    "fault": 2,
    "disabled": 3,
    "supervisory": 4,
    "start": 5,
    "feedback": 6,
    "delay": 7,
    "power_fault": 8,
}

#: GB/T 26875.3-2011 controller operation information flags: operator action -> bit.
OPERATION_BITS: dict[str, int] = {
    "reset": 0,
    "silence": 1,
    "manual_alarm": 2,
    "alarm_cleared": 3,
    "self_test": 4,
    "acknowledge": 5,
    "test": 6,
}


class ZoneState(enum.StrEnum):
    """Readable state of a detector or zone, most important first."""

    FIRE = "fire"
    PREALARM = "prealarm"
    DELAY = "delay"
    START = "start"
    FEEDBACK = "feedback"
    SUPERVISORY = "supervisory"
    FAULT = "fault"
    DISABLED = "disabled"
    NORMAL = "normal"


@dataclass
class Detector:
    """One addressable device on a zone's loop (smoke/heat detector, call point, input)."""

    number: int
    fire: bool = False
    prealarm: bool = False
    supervisory: bool = False
    fault: bool = False
    disabled: bool = False

    @property
    def state(self) -> ZoneState:
        for name in ("fire", "prealarm", "supervisory", "fault", "disabled"):
            if getattr(self, name):
                return ZoneState(name)
        return ZoneState.NORMAL

    def status(self, *, test_mode: bool) -> int:
        flags = {"running_normal": not test_mode, "fire": self.fire, "fault": self.fault,
                 "disabled": self.disabled, "supervisory": self.supervisory}
        return _word(flags, COMPONENT_BITS)


@dataclass
class Zone:
    """A zone (防区): its detectors and its linkage output (delay → start → feedback)."""

    number: int
    detectors: list[Detector]
    disabled: bool = False
    start: bool = False
    feedback: bool = False
    delay: bool = False
    power_fault: bool = False
    delay_left: float | None = None
    feedback_left: float | None = None

    def flags(self, *, test_mode: bool) -> dict[str, bool]:
        """The component-status booleans plus ``prealarm``."""
        d = self.detectors
        return {
            "running_normal": not test_mode,
            "fire": any(x.fire for x in d),
            "fault": any(x.fault for x in d),
            "disabled": self.disabled or any(x.disabled for x in d),
            "supervisory": any(x.supervisory for x in d),
            "start": self.start,
            "feedback": self.feedback,
            "delay": self.delay,
            "power_fault": self.power_fault,
            "prealarm": any(x.prealarm for x in d),
        }

    def state(self, flags: Mapping[str, bool]) -> ZoneState:
        for state in ZoneState:
            if state is not ZoneState.NORMAL and flags[state.value]:
                return state
        return ZoneState.NORMAL


@dataclass
class FirePanelModel:
    """The panel's logic; actions queue events in :attr:`events`, :meth:`step` runs timers."""

    zones: dict[int, Zone]
    linkage: bool = True
    linkage_delay: float = 10.0
    feedback_after: float = 3.0
    reset_hold: float = 2.0
    manual: bool = False
    test_mode: bool = False
    main_power_fault: bool = False
    backup_power_fault: bool = False
    bus_fault: bool = False
    config_changed: bool = False
    silenced: bool = False
    reset_left: float = 0.0
    #: (event, zone, detector, operator action or None), oldest first; the simulator drains it.
    events: list[tuple[str, int, int, str | None]] = field(default_factory=list)

    @classmethod
    def build(cls, zones: int, detectors_per_zone: int, **options: Any) -> FirePanelModel:
        """A panel with zones ``1..zones`` of detectors ``1..detectors_per_zone``."""
        return cls({z: Zone(z, [Detector(d) for d in range(1, detectors_per_zone + 1)])
                    for z in range(1, zones + 1)}, **options)

    # -- controller state

    def controller_flags(self) -> dict[str, bool]:
        zone_flags = [z.flags(test_mode=self.test_mode) for z in self.zones.values()]

        def anyz(name: str) -> bool:
            return any(f[name] for f in zone_flags)

        return {
            "running_normal": not self.test_mode,
            "fire": anyz("fire"),
            "fault": anyz("fault") or anyz("power_fault") or self.main_power_fault
            or self.backup_power_fault or self.bus_fault,
            "disabled": anyz("disabled"),
            "supervisory": anyz("supervisory"),
            "start": anyz("start"),
            "feedback": anyz("feedback"),
            "delay": anyz("delay"),
            "main_power_fault": self.main_power_fault,
            "backup_power_fault": self.backup_power_fault,
            "bus_fault": self.bus_fault,
            "manual": self.manual,
            "config_changed": self.config_changed,
            "reset": self.reset_left > 0,
        }

    def status_word(self) -> int:
        """The GB/T 26875.3 controller status word now."""
        return _word(self.controller_flags(), CONTROLLER_BITS)

    # -- detector conditions

    def set_condition(self, zone: Zone, detector: Detector, condition: str) -> bool:
        """Put a detector into ``fire``/``prealarm``/``supervisory``/``fault``.

        Returns False (and changes nothing) when it is disabled or already in that condition:
        a disabled (屏蔽) device is not reported by the panel.
        """
        if zone.disabled or detector.disabled or getattr(detector, condition):
            return False
        setattr(detector, condition, True)
        self.events.append((condition, zone.number, detector.number, None))
        if condition == "fire":
            self.silenced = False  # a new fire sounds again
            if self.linkage and not self.manual and not (zone.delay or zone.start):
                self.begin_delay(zone, self.linkage_delay)
        return True

    def restore(self, zone: Zone, detectors: list[Detector]) -> None:
        """Field conditions clear (fault repaired, valve reopened); fire latches until reset."""
        for d in detectors:
            if d.prealarm or d.supervisory or d.fault:
                d.prealarm = d.supervisory = d.fault = False
                self.events.append(("restore", zone.number, d.number, None))

    def set_disabled(self, zone: Zone, detector: Detector | None, disabled: bool) -> None:
        target: Zone | Detector = zone if detector is None else detector
        if target.disabled != disabled:
            target.disabled = disabled
            self.events.append(("disabled" if disabled else "enabled", zone.number,
                                0 if detector is None else detector.number, None))

    # -- linkage

    def begin_delay(self, zone: Zone, seconds: float) -> None:
        zone.feedback_left = None
        if seconds <= 0:
            self.start(zone)
            return
        zone.delay, zone.delay_left = True, seconds
        self.events.append(("delay", zone.number, 0, None))

    def start(self, zone: Zone) -> None:
        zone.delay, zone.delay_left = False, None
        if not zone.start:
            zone.start = True
            self.events.append(("start", zone.number, 0, None))
        zone.feedback_left = self.feedback_after if not zone.feedback else None

    def stop(self, zone: Zone) -> None:
        if zone.start or zone.feedback or zone.delay:
            self.events.append(("stop", zone.number, 0, None))
        zone.start = zone.feedback = zone.delay = False
        zone.delay_left = zone.feedback_left = None

    def set_feedback(self, zone: Zone, on: bool) -> None:
        zone.feedback_left = None
        if zone.feedback != on:
            zone.feedback = on
            if on:
                self.events.append(("feedback", zone.number, 0, None))

    # -- controller

    def set_fault(self, name: str, on: bool) -> None:
        """``main_power_fault``, ``backup_power_fault`` or ``bus_fault``."""
        if getattr(self, name) != on:
            setattr(self, name, on)
            self.events.append((name if on else name.replace("_fault", "_restored"), 0, 0,
                                None))

    def operator(self, action: str) -> None:
        """Reset, silence or acknowledge at the panel."""
        if action == "reset":
            for zone in self.zones.values():
                for d in zone.detectors:
                    d.fire = d.prealarm = False
                zone.start = zone.feedback = zone.delay = False
                zone.delay_left = zone.feedback_left = None
            self.silenced = False
            self.config_changed = False
            self.reset_left = self.reset_hold
        elif action == "silence":
            self.silenced = True
        self.events.append((action, 0, 0, action))

    def step(self, dt: float) -> None:
        """Run the timers: the reset indication and each zone's delay and feedback."""
        if self.reset_left > 0:
            self.reset_left = max(0.0, self.reset_left - dt)
        for zone in self.zones.values():
            if zone.delay_left is not None:
                zone.delay_left -= dt
                if zone.delay_left <= 0:
                    self.start(zone)
            elif zone.feedback_left is not None:
                zone.feedback_left -= dt
                if zone.feedback_left <= 0:
                    self.set_feedback(zone, True)


class FirePanelSim(MqttSim):
    """A :class:`FirePanelModel` publishing over MQTT (see the module docstring).

    Args:
        name: Panel id, e.g. ``FACP-1``; the second topic level.
        host: Broker host.
        port: Broker port.
        topic_prefix: First topic level(s).
        zones: Number of zones (1..255).
        detectors_per_zone: Detectors on each zone (1..255).
        seed: Which detector trips when an action names only the zone.
        heartbeat: Seconds between full state reports.
        linkage: Start linkage automatically on fire in automatic mode.
        linkage_delay: Seconds of delay (延时) before the start.
        feedback_after: Seconds from start to feedback (反馈).
        reset_hold: Seconds the reset bit stays set after a reset.
        tick: Seconds between timer steps.
        clock: Time source (default: the real clock).
        **link: Passed to :class:`~simulators.mqtt_sim.MqttSim` (``client_id``,
            ``connect_timeout``, ``reconnect_initial``, ``reconnect_max``, ``max_buffered``).

    Raises:
        ValueError: An impossible argument.
    """

    kind: ClassVar[str] = "fire_panel"
    malformed_params: ClassVar[dict[str, str]] = {
        "zone": "break this zone's topic (default: the controller topic)"}

    def __init__(self, name: str, *, host: str, port: int, topic_prefix: str = "fire",
                 zones: int = 8, detectors_per_zone: int = 8, seed: int = 0,
                 heartbeat: float = 30.0, linkage: bool = True, linkage_delay: float = 10.0,
                 feedback_after: float = 3.0, reset_hold: float = 2.0, tick: float = 0.1,
                 clock: Clock | None = None, **link: Any) -> None:
        if not 1 <= zones <= 255 or not 1 <= detectors_per_zone <= 255:
            raise ValueError("zones and detectors_per_zone must be 1..255")
        if linkage_delay < 0 or feedback_after < 0 or reset_hold < 0:
            raise ValueError("linkage_delay, feedback_after and reset_hold must be >= 0")
        super().__init__(name, host=host, port=port, topic_prefix=topic_prefix, seed=seed,
                         heartbeat=heartbeat, tick=tick, clock=clock, **link)
        self.model = FirePanelModel.build(zones, detectors_per_zone, linkage=linkage,
                                          linkage_delay=linkage_delay,
                                          feedback_after=feedback_after, reset_hold=reset_hold)
        self._seq = 0
        self._last_event: dict[str, Any] | None = None

    # ------------------------------------------------------------------ topics

    @property
    def controller_topic(self) -> str:
        return f"{self.topic_prefix}/{self.name}/controller"

    def zone_topic(self, zone: int) -> str:
        return f"{self.topic_prefix}/{self.name}/zone/{zone}"

    @property
    def event_topic(self) -> str:
        return f"{self.topic_prefix}/{self.name}/event"

    # ------------------------------------------------------------------ payloads

    def controller_body(self) -> dict[str, Any]:
        """The controller topic's payload now, without ``ts``."""
        m = self.model
        flags = m.controller_flags()
        fire_zones = [z.number for z in m.zones.values()
                      if z.flags(test_mode=m.test_mode)["fire"]]
        return {"panel": self.name, "status_word": _word(flags, CONTROLLER_BITS), **flags,
                "prealarm": any(z.flags(test_mode=m.test_mode)["prealarm"]
                                for z in m.zones.values()),
                "silenced": m.silenced, "fire_zone": fire_zones[0] if fire_zones else 0,
                "fire_zones": fire_zones}

    def zone_body(self, number: int) -> dict[str, Any]:
        """Zone ``number``'s payload now, without ``ts``."""
        zone = self.model.zones[number]
        test_mode = self.model.test_mode
        flags = zone.flags(test_mode=test_mode)
        status = _word(flags, COMPONENT_BITS)
        alarm = next((d.number for d in zone.detectors if d.fire), 0)
        return {"panel": self.name, "zone": number, "state": zone.state(flags).value,
                "status": status, **flags, "alarm_detector": alarm,
                "detectors": [{"detector": d.number, "state": d.state.value,
                               "status": d.status(test_mode=test_mode)}
                              for d in zone.detectors]}

    def _state_bodies(self) -> dict[str, dict[str, Any]]:
        bodies = {self.controller_topic: self.controller_body()}
        for number in self.model.zones:
            bodies[self.zone_topic(number)] = self.zone_body(number)
        return bodies

    def _device_snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "controller": self.controller_body(),
                "zones": {n: self.zone_body(n) for n in self.model.zones},
                "last_event": self._last_event}

    def _malformed_target(self, params: Mapping[str, Any]) -> tuple[str, str]:
        if "zone" in params:
            return self.zone_topic(self._zone(params).number), "fire"
        return self.controller_topic, "status_word"

    # ------------------------------------------------------------------ time

    def _step(self, dt: float) -> None:
        self.model.step(dt)  # its events go out with the state sync that follows

    def _sync_state(self) -> None:
        self._flush_events()
        super()._sync_state()

    def _flush_events(self) -> None:
        for event, zone, detector, operation in self.model.events:
            self._seq += 1
            body = {"panel": self.name, "seq": self._seq, "event": event, "zone": zone,
                    "detector": detector,
                    "operation": 1 << OPERATION_BITS[operation] if operation else 0,
                    "operator_action": operation is not None}
            self._last_event = body
            self.publish_event(self.event_topic, body)
        self.model.events.clear()

    # ------------------------------------------------------------------ actions

    def _device_actions(self) -> list[Action]:
        return list(_ACTIONS)

    def _apply_device(self, action: str, params: Mapping[str, Any]) -> str:
        m = self.model
        if action in ("fire", "prealarm", "supervisory", "fault"):
            zone = self._zone(params)
            detector = self._detector(zone, params, pick_enabled=True)
            where = f"zone {zone.number} detector {detector.number}"
            if zone.disabled or detector.disabled:
                return f"{where} is disabled (屏蔽): the panel ignores it"
            if not m.set_condition(zone, detector, action):
                return f"{where} is already in {action}"
            return f"{where}: {action}"
        if action == "restore":
            zone = self._zone(params)
            detectors = ([self._detector(zone, params)] if "detector" in params
                         else zone.detectors)
            m.restore(zone, detectors)
            return f"zone {zone.number}: field conditions restored"
        if action in ("disable", "enable"):
            zone = self._zone(params)
            one = self._detector(zone, params) if "detector" in params else None
            m.set_disabled(zone, one, action == "disable")
            what = f"detector {one.number}" if one else "the whole zone"
            return f"zone {zone.number}: {what} {action}d"
        return self._apply_linkage_or_controller(action, params)

    def _apply_linkage_or_controller(self, action: str, params: Mapping[str, Any]) -> str:
        m = self.model
        if action == "start":
            zone = self._zone(params)
            m.start(zone)
            return f"zone {zone.number}: linkage started"
        if action == "stop":
            zone = self._zone(params)
            m.stop(zone)
            return f"zone {zone.number}: linkage stopped"
        if action == "delay":
            zone = self._zone(params)
            m.begin_delay(zone, param_float(params, "seconds", m.linkage_delay))
            return f"zone {zone.number}: linkage delay running"
        if action == "feedback":
            zone = self._zone(params)
            m.set_feedback(zone, param_bool(params, "on", True))
            return f"zone {zone.number}: feedback {'on' if zone.feedback else 'off'}"
        if action == "power_fault":
            zone = self._zone(params)
            on = param_bool(params, "on", True)
            if zone.power_fault != on:
                zone.power_fault = on
                m.events.append(("zone_power_fault" if on else "zone_power_restored",
                                 zone.number, 0, None))
            return f"zone {zone.number}: power {'fault' if on else 'restored'}"
        if action in ("main_power_fault", "backup_power_fault", "bus_fault"):
            on = param_bool(params, "on", True)
            m.set_fault(action, on)
            return f"{action.replace('_', ' ')} {'on' if on else 'cleared'}"
        if action == "mode":
            mode = param_choice(params, "mode", ("auto", "manual"), "auto")
            if m.manual != (mode == "manual"):
                m.manual = mode == "manual"
                m.events.append((f"mode_{mode}", 0, 0, None))
            return f"{mode} mode"
        if action == "test_mode":
            on = param_bool(params, "on", True)
            if m.test_mode != on:
                m.test_mode = on
                m.events.append(("self_test", 0, 0, "self_test") if on
                                else ("test_end", 0, 0, None))
            return "test mode" if on else "normal operation"
        if action == "config_change":
            m.config_changed = True
            m.events.append(("config_changed", 0, 0, None))
            return "configuration changed"
        if action in ("reset", "silence", "acknowledge"):
            m.operator(action)
            return f"operator {action}"
        raise ActionError(f"fire_panel has no action {action!r}; try: "
                          f"{', '.join(a.name for a in self.actions())}")

    def _zone(self, params: Mapping[str, Any]) -> Zone:
        number = param_int(params, "zone")
        zone = self.model.zones.get(number)
        if zone is None:
            raise ActionError(f"no zone {number}; zones are 1..{len(self.model.zones)}")
        return zone

    def _detector(self, zone: Zone, params: Mapping[str, Any], *,
                  pick_enabled: bool = False) -> Detector:
        if "detector" not in params:
            candidates = [d for d in zone.detectors if not d.disabled] if pick_enabled else []
            return self.rng.choice(candidates or zone.detectors)
        number = param_int(params, "detector")
        if not 1 <= number <= len(zone.detectors):
            raise ActionError(f"no detector {number} in zone {zone.number}; detectors are "
                              f"1..{len(zone.detectors)}")
        return zone.detectors[number - 1]


def _word(flags: Mapping[str, bool], bits: Mapping[str, int]) -> int:
    return sum(1 << bit for name, bit in bits.items() if flags.get(name))


_ZONE = {"zone": "zone number"}
_DETECTOR = {"zone": "zone number",
             "detector": "detector number (default: a seeded random one in the zone)"}
_ON = {"on": "true|false (default true)"}

_ACTIONS = [
    Action("fire", "a detector goes into fire alarm (火警); automatic mode starts linkage",
           _DETECTOR),
    Action("prealarm", "a detector pre-alarms (预警, vendor-specific)", _DETECTOR),
    Action("supervisory", "supervisory signal (监管): valve, pump, pressure", _DETECTOR),
    Action("fault", "a detector reports a fault (故障)", _DETECTOR),
    Action("restore", "field conditions clear: prealarm, supervisory, fault (fire latches "
                      "until reset)", {"zone": "zone number",
                                       "detector": "one detector (default: all in the zone)"}),
    Action("disable", "disable (屏蔽) a detector or the whole zone",
           {"zone": "zone number", "detector": "one detector (default: the zone)"}),
    Action("enable", "undo disable", {"zone": "zone number",
                                      "detector": "one detector (default: the zone)"}),
    Action("delay", "linkage delay (延时), then start",
           {"zone": "zone number", "seconds": "delay (default linkage_delay)"}),
    Action("start", "linkage started (启动), feedback follows after feedback_after", _ZONE),
    Action("feedback", "linkage feedback (反馈)", {**_ZONE, **_ON}),
    Action("stop", "linkage stopped", _ZONE),
    Action("power_fault", "a zone's power supply fails (component bit 8)", {**_ZONE, **_ON}),
    Action("main_power_fault", "main power fails (主电故障)", _ON),
    Action("backup_power_fault", "backup battery fails (备电故障)", _ON),
    Action("bus_fault", "loop/bus fault (总线故障)", _ON),
    Action("mode", "manual or automatic linkage", {"mode": "auto|manual (default auto)"}),
    Action("test_mode", "self-test: the status word's bit 0 clears", _ON),
    Action("config_change", "configuration changed (bit 12, until reset)"),
    Action("reset", "operator reset: clears fire, pre-alarm and linkage; faults stay"),
    Action("silence", "operator silences the sounders"),
    Action("acknowledge", "operator acknowledges"),
]
