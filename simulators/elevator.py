"""A simulated elevator (lift) that speaks Modbus like a GB/T 24476-style IoT terminal.

The car moves between floors at a realistic speed, opens and closes its doors, knows whether it
is in the door (unlocking) zone, carries passengers, and can be made to misbehave: stop between
floors, lose power, go into inspection or fire recall, have its alarm button pressed, have doors
that will not open.

A request to open the doors (the in-car door-open button, or the car arriving at a called floor)
is served at once by healthy doors; with a door fault the doors stay shut, the request stays
registered (``door_open_request``) and after ``door_open_limit_s`` the controller reports fault
03 (door fails to open). A passenger waiting in a parked car with closed doors asks for nothing
and so is not shown as trapped.

Register map (holding registers, function code 3, 0-based addresses). This table is the
documented map; ``config/profiles/elevator-modbus.yaml`` is the gateway's copy of it and a test
checks that the two agree.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import Clock, SystemClock
from simulators.base import Action, ActionError
from simulators.encoding import encode
from simulators.modbus_faults import MODBUS_FAULT_ACTIONS, apply_modbus_fault, fault_state
from simulators.modbus_server import SimUnit

__all__ = ["REGISTER_MAP", "DoorState", "ElevatorModel", "ElevatorSim", "ServiceMode"]

log = logging.getLogger(__name__)

#: name -> (address, type, meaning). Bits of ``status_bits`` are listed in STATUS_BITS.
REGISTER_MAP: dict[str, tuple[int, str, str]] = {
    "car_status": (0, "uint16", "0 stopped, 1 running"),
    "car_direction": (1, "uint16", "0 none, 1 up, 2 down"),
    "door_zone": (2, "uint16", "1 in the unlocking (door) zone, 2 outside it"),
    "car_position": (3, "int16", "floor number (nearest floor while moving)"),
    "door_status": (4, "uint16", "1 closed and locked, 2 not closed"),
    "passenger_status": (5, "uint16", "1 occupied, 2 empty"),
    "service_mode": (6, "uint16", "0 out of service, 1 normal, 2 inspection, 3 fire recall, "
                                  "4 firefighter, 5 emergency power, 6 earthquake, 7 unknown"),
    "power_status": (7, "uint16", "1 normal, 2 main power cut"),
    "alarm_button": (8, "uint16", "1 while the in-car alarm button is pressed"),
    "status_bits": (9, "uint16", "bit field, see STATUS_BITS"),
    "fault_code": (10, "uint16", "active fault, national-style code (0 none, 1-11)"),
    "event_code": (11, "uint16", "last event, national-style code (40-47 modes, 90 alarm)"),
    "car_speed": (12, "float32", "m/s, signed: + up, - down"),
    "run_count": (14, "uint32", "trips since commissioning"),
    "door_open_request": (16, "uint16", "1 while a request to open the doors (door-open button, "
                                        "or a call answered at this floor) is not yet served"),
}

#: status_bits (register 9): name -> bit (0 = least significant).
STATUS_BITS: dict[str, int] = {
    "up_limit": 0,
    "down_limit": 1,
    "safety_circuit_open": 2,
    "door_lock_open": 3,
}

_FLOOR_HEIGHT_M = 3.0
#: ±0.2 m of the sill counts as the door zone (EN 81-20 unlocking zone; the size is UNVERIFIED,
#: see docs/facility-rules.md#elevator-signals).
_DOOR_ZONE_FLOORS = 0.2 / _FLOOR_HEIGHT_M
#: National-style fault 03 (docs/facility-rules.md#elevator-codes).
_FAULT_DOOR_FAILS_TO_OPEN = 3


class ServiceMode(enum.IntEnum):
    OUT_OF_SERVICE = 0
    NORMAL = 1
    INSPECTION = 2
    FIRE_RECALL = 3
    FIREFIGHTER = 4
    EMERGENCY_POWER = 5
    EARTHQUAKE = 6
    UNKNOWN = 7


class DoorState(enum.StrEnum):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"


@dataclass
class ElevatorModel:
    """The physics and logic of one car; advance it with :meth:`step`."""

    lowest: int = 1
    highest: int = 18
    speed_floors_per_s: float = 0.5  # ≈1.5 m/s with 3 m floors
    door_move_s: float = 2.0
    door_hold_s: float = 4.0
    #: How long the controller tries to open faulty doors before it reports fault 03.
    door_open_limit_s: float = 10.0
    position: float = 1.0
    target: int | None = None
    door: DoorState = DoorState.CLOSED
    door_timer: float = 0.0
    occupied: bool = False
    alarm_button: bool = False
    mode: ServiceMode = ServiceMode.NORMAL
    power_ok: bool = True
    halted: bool = False
    fault_code: int = 0
    event_code: int = 0
    run_count: int = 0
    calls: list[int] = field(default_factory=list)
    #: The door operator is broken: the doors do not open when asked to.
    door_fault: bool = False
    #: A request to open the doors is registered and not yet served.
    door_request: bool = False
    door_request_s: float = 0.0

    # -- commands

    def call(self, floor: int) -> None:
        """A landing or car call."""
        if not self.lowest <= floor <= self.highest:
            raise ValueError(f"floor {floor} is outside {self.lowest}..{self.highest}")
        if floor not in self.calls:
            self.calls.append(floor)

    def stop_between_floors(self) -> None:
        """The controller trips (e.g. safety circuit) and the car stops where it is."""
        if self.in_door_zone:
            self.position = int(self.position) + 0.5  # put it squarely between two floors
        self.halted, self.target = True, None
        self.calls.clear()
        self.door, self.door_timer = DoorState.CLOSED, 0.0
        self.fault_code = 4  # national-style 04: stopped outside the unlocking zone

    def stop_at_floor(self) -> None:
        """Stops at the nearest floor and its doors fail to open (trapped at a floor): the
        controller's own request to open them stays unserved, fault 03 follows."""
        self.position = float(round(self.position))
        self.target = None
        self.calls.clear()
        self.door, self.door_timer = DoorState.CLOSED, 0.0
        self.door_fault = True
        self.request_door_open()

    def set_door_fault(self, broken: bool) -> None:
        """Break (or mend) the door operator; a broken one leaves the doors shut when asked."""
        self.door_fault = broken
        if not broken and self.fault_code == _FAULT_DOOR_FAILS_TO_OPEN:
            self.fault_code = 0

    def request_door_open(self) -> bool:
        """The door-open button, or the car answering a call at this floor: open the doors.

        Returns False when there is nothing to ask (the car is running, or outside the door
        zone, where doors do not open)."""
        if self.moving or not self.in_door_zone:
            return False
        if self.door is DoorState.CLOSING:  # a door-open button re-opens closing doors
            self.door, self.door_timer = DoorState.OPENING, self.door_move_s - self.door_timer
        elif self.door is DoorState.OPEN:
            self.door_timer = 0.0  # holds them open a little longer
        elif self.door is DoorState.CLOSED and not self.door_request:
            self.door_request, self.door_request_s = True, 0.0
        return True

    def recover(self) -> None:
        """A technician resets the controller (and mends the doors)."""
        self.halted, self.fault_code, self.door_fault = False, 0, False
        if not self.in_door_zone:
            self.call(max(self.lowest, min(self.highest, round(self.position))))

    def set_mode(self, mode: ServiceMode) -> None:
        self.mode = mode
        self.event_code = {ServiceMode.NORMAL: 40, ServiceMode.OUT_OF_SERVICE: 42,
                           ServiceMode.INSPECTION: 43, ServiceMode.FIRE_RECALL: 44,
                           ServiceMode.FIREFIGHTER: 45, ServiceMode.EMERGENCY_POWER: 46,
                           ServiceMode.EARTHQUAKE: 47}.get(mode, self.event_code)

    def set_power(self, ok: bool) -> None:
        self.power_ok = ok
        if not ok:
            self.event_code = 41
            self.halted, self.target = True, None
        else:
            self.halted = False
            self.event_code = 40

    def press_alarm(self, pressed: bool = True) -> None:
        self.alarm_button = pressed
        if pressed:
            self.event_code = 90

    # -- state

    @property
    def in_door_zone(self) -> bool:
        return abs(self.position - round(self.position)) <= _DOOR_ZONE_FLOORS

    @property
    def moving(self) -> bool:
        return self.target is not None and not self.halted

    @property
    def direction(self) -> int:
        if not self.moving or self.target is None:
            return 0
        return 1 if self.target > self.position else 2

    @property
    def speed_m_s(self) -> float:
        if not self.moving:
            return 0.0
        sign = 1.0 if self.direction == 1 else -1.0
        return sign * self.speed_floors_per_s * _FLOOR_HEIGHT_M

    def step(self, dt: float) -> None:
        """Advance the simulation by ``dt`` seconds."""
        if self.halted or not self.power_ok:
            return
        if self.door is not DoorState.CLOSED:
            self._step_door(dt)
            return
        if self.door_request:
            self._serve_door_request(dt)
            return
        if self.target is None and self.calls:
            self.target = self.calls.pop(0)
            if self.target != round(self.position) or not self.in_door_zone:
                self.run_count += 1
        if self.target is None:
            return
        distance = self.target - self.position
        travel = self.speed_floors_per_s * dt
        if abs(distance) <= travel:
            self.position = float(self.target)
            self.target = None
            self.request_door_open()
        else:
            self.position += travel if distance > 0 else -travel

    def _serve_door_request(self, dt: float) -> None:
        """Open the doors, or keep trying while they are broken (the car waits meanwhile)."""
        if not self.door_fault:
            self.door_request, self.door_request_s = False, 0.0
            self.door, self.door_timer = DoorState.OPENING, 0.0
            return
        self.door_request_s += dt
        if self.door_request_s >= self.door_open_limit_s and self.fault_code == 0:
            self.fault_code = _FAULT_DOOR_FAILS_TO_OPEN

    def _step_door(self, dt: float) -> None:
        self.door_timer += dt
        if self.door is DoorState.OPENING and self.door_timer >= self.door_move_s:
            self.door, self.door_timer = DoorState.OPEN, 0.0
        elif self.door is DoorState.OPEN and self.door_timer >= self.door_hold_s:
            self.door, self.door_timer = DoorState.CLOSING, 0.0
        elif self.door is DoorState.CLOSING and self.door_timer >= self.door_move_s:
            self.door, self.door_timer = DoorState.CLOSED, 0.0

    def registers(self) -> dict[int, int]:
        """The holding registers as a real terminal would present them now."""
        values: dict[str, float] = {
            "car_status": 1 if self.moving else 0,
            "car_direction": self.direction,
            "door_zone": 1 if self.in_door_zone else 2,
            "car_position": round(self.position),
            "door_status": 1 if self.door is DoorState.CLOSED else 2,
            "passenger_status": 1 if self.occupied else 2,
            "service_mode": int(self.mode),
            "power_status": 1 if self.power_ok else 2,
            "alarm_button": 1 if self.alarm_button else 0,
            "status_bits": self._status_bits(),
            "fault_code": self.fault_code,
            "event_code": self.event_code,
            "car_speed": self.speed_m_s,
            "run_count": self.run_count,
            "door_open_request": 1 if self.door_request else 0,
        }
        out: dict[int, int] = {}
        for name, (address, type_name, _) in REGISTER_MAP.items():
            for i, word in enumerate(encode(values[name], type_name)):
                out[address + i] = word
        return out

    def _status_bits(self) -> int:
        flags = {
            "up_limit": self.position > self.highest + _DOOR_ZONE_FLOORS,
            "down_limit": self.position < self.lowest - _DOOR_ZONE_FLOORS,
            "safety_circuit_open": self.halted and self.fault_code in (1, 4),
            "door_lock_open": self.door is not DoorState.CLOSED,
        }
        return sum(1 << STATUS_BITS[name] for name, on in flags.items() if on)


class ElevatorSim:
    """An :class:`ElevatorModel` wired to a Modbus unit, ticking on a clock.

    With ``traffic`` on, passengers call the car to random floors (seeded, so runs repeat).
    Implements :class:`simulators.base.Simulator`.
    """

    kind = "elevator"

    def __init__(self, name: str, *, unit_id: int = 1, tick: float = 0.1,
                 traffic: bool = True, seed: int = 0, model: ElevatorModel | None = None,
                 clock: Clock | None = None) -> None:
        self.name = name
        self.model = model or ElevatorModel()
        self.unit = SimUnit(unit_id)
        self.tick = tick
        self.traffic = traffic
        self.clock: Clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._publish()

    def actions(self) -> list[Action]:
        return [*_ACTIONS, *MODBUS_FAULT_ACTIONS]

    def apply(self, action: str, params: Mapping[str, Any]) -> str:
        if apply_modbus_fault(self.unit, action, params):
            return f"{self.name}: fault {action} {dict(params) or ''}".rstrip()
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            raise ActionError(f"elevator has no action {action!r}; try: "
                              f"{', '.join(a.name for a in self.actions())}")
        result: str = handler(params)
        self._publish()
        return f"{self.name}: {result}"

    def _do_call(self, params: Mapping[str, Any]) -> str:
        self.model.call(_int_param(params, "floor"))
        return f"called to floor {params['floor']}"

    def _do_board(self, params: Mapping[str, Any]) -> str:
        self.model.occupied = True
        return "a passenger boards"

    def _do_leave(self, params: Mapping[str, Any]) -> str:
        self.model.occupied = False
        return "the car is empty"

    def _do_traffic(self, params: Mapping[str, Any]) -> str:
        self.traffic = bool(params.get("enabled", True))
        return f"random traffic {'on' if self.traffic else 'off'}"

    def _do_stop_between_floors(self, params: Mapping[str, Any]) -> str:
        self.traffic = False
        self.model.stop_between_floors()
        floor = int(self.model.position)
        return f"stopped between floors {floor} and {floor + 1}, doors closed"

    def _do_stop_at_floor(self, params: Mapping[str, Any]) -> str:
        self.traffic = False
        self.model.stop_at_floor()
        return f"stopped at floor {round(self.model.position)}; its doors do not open"

    def _do_press_door_open(self, params: Mapping[str, Any]) -> str:
        if not self.model.request_door_open():
            return "door-open button pressed; nothing happens outside a floor's door zone"
        if self.model.door_fault:
            return "door-open button pressed; the doors do not open"
        return "door-open button pressed"

    def _do_door_fault(self, params: Mapping[str, Any]) -> str:
        broken = bool(params.get("active", True))
        self.model.set_door_fault(broken)
        return "door fault: the doors will not open" if broken else "door fault cleared"

    def _do_recover(self, params: Mapping[str, Any]) -> str:
        self.model.recover()
        return "controller reset; car levels and opens"

    def _do_press_alarm(self, params: Mapping[str, Any]) -> str:
        self.model.press_alarm(bool(params.get("pressed", True)))
        return f"alarm button {'pressed' if self.model.alarm_button else 'released'}"

    def _do_mode(self, params: Mapping[str, Any]) -> str:
        mode = str(params.get("mode", "normal")).upper()
        if mode not in ServiceMode.__members__:
            raise ActionError(f"mode must be one of "
                              f"{', '.join(x.lower() for x in ServiceMode.__members__)}")
        self.model.set_mode(ServiceMode[mode])
        return f"service mode {mode.lower()}"

    def _do_power(self, params: Mapping[str, Any]) -> str:
        # "on"/"off" are booleans to YAML 1.1 (also as keys), hence "state: cut|normal".
        state = str(params.get("state", "normal"))
        if state not in ("cut", "normal"):
            raise ActionError("power state must be cut or normal")
        self.model.set_power(state == "normal")
        return f"main power {'restored' if self.model.power_ok else 'cut'}"

    def _do_door(self, params: Mapping[str, Any]) -> str:
        state = str(params.get("state", "open"))
        if state not in ("open", "closed"):
            raise ActionError("door state must be open or closed")
        self.model.door = DoorState.OPEN if state == "open" else DoorState.CLOSED
        self.model.door_timer = -float(params.get("hold", 0))
        if state == "open":
            self.model.door_request = False
        return f"door {state}"

    def _do_move_with_doors_open(self, params: Mapping[str, Any]) -> str:
        m = self.model
        m.door, m.halted = DoorState.OPEN, False
        m.target = max(m.lowest, min(m.highest, round(m.position) + 1))
        m.position += 0.3
        return "car moves away from the floor with its doors open"

    def snapshot(self) -> dict[str, Any]:
        m = self.model
        return {"position": round(m.position, 2), "floor": round(m.position),
                "moving": m.moving, "direction": m.direction, "door": m.door.value,
                "in_door_zone": m.in_door_zone, "occupied": m.occupied,
                "alarm_button": m.alarm_button, "mode": m.mode.name.lower(),
                "power_ok": m.power_ok, "fault_code": m.fault_code,
                "door_fault": m.door_fault, "door_open_request": m.door_request,
                "faults": fault_state(self.unit)}

    def _publish(self) -> None:
        for address, word in self.model.registers().items():
            self.unit.holding[address] = word

    async def run(self) -> None:
        """Advance the model every ``tick`` seconds of the clock until cancelled."""
        last = self.clock.monotonic()
        while True:
            await self.clock.sleep(self.tick)
            now = self.clock.monotonic()
            self.model.step(now - last)
            last = now
            if self.traffic and not self.model.halted and not self.model.calls \
                    and self.model.target is None and self.model.door is DoorState.CLOSED \
                    and not self.model.door_request:
                self.model.occupied = self._rng.random() < 0.7
                self.model.call(self._rng.randint(self.model.lowest, self.model.highest))
            self._publish()

    def refresh(self) -> None:
        """Push the model's state to the registers now (after a command)."""
        self._publish()


_ACTIONS = [
    Action("call", "call the car to a floor", {"floor": "floor number"}),
    Action("board", "a passenger gets in (occupancy sensor on)"),
    Action("leave", "the car becomes empty"),
    Action("traffic", "random passenger traffic on/off",
           {"enabled": "true|false (default true)"}),
    Action("stop_between_floors", "controller trip: car stops outside the door zone, doors "
                                  "closed (fault 04)"),
    Action("stop_at_floor", "car stops at a floor and its doors do not open (fault 03 after "
                            "the controller's retries)"),
    Action("press_door_open", "a passenger presses the door-open button (served at once by "
                              "healthy doors)"),
    Action("door_fault", "the door operator fails: doors stay shut when asked to open",
           {"active": "true|false (default true)"}),
    Action("recover", "technician resets the controller"),
    Action("press_alarm", "in-car alarm button", {"pressed": "true|false (default true)"}),
    Action("mode", "service mode", {"mode": "normal, inspection, out_of_service, fire_recall, "
                                            "firefighter, emergency_power, earthquake"}),
    Action("power", "main power", {"state": "cut|normal"}),
    Action("door", "force the door state", {"state": "open|closed",
                                            "hold": "extra seconds to hold open"}),
    Action("move_with_doors_open", "unintended car movement (开门走车)"),
]


def _int_param(params: Mapping[str, Any], key: str) -> int:
    try:
        return int(params[key])
    except (KeyError, TypeError, ValueError):
        raise ActionError(f"parameter {key!r} must be an integer") from None
