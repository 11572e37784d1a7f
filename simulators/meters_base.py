"""What the simulated meters share: simulated time of day, action parameters, faults.

:class:`MeterSimBase` owns one :class:`~simulators.modbus_server.SimUnit`, a
:class:`DayClock`, the engineering values of the meter and the faults that are routed to the
unit. Subclasses compute the values (:meth:`MeterSimBase._compute`), integrate the totals
(:meth:`MeterSimBase._integrate`) and add their own actions.
"""

from __future__ import annotations

import abc
import asyncio
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from simulators.base import Action, ActionError
from simulators.meter_maps import RegisterMap
from simulators.modbus_server import SimUnit

__all__ = ["DAY_SECONDS", "Condition", "DayClock", "MeterSimBase", "Params", "bump",
           "step_every"]

DAY_SECONDS = 86400.0

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def bump(hour: float, centre: float, width: float) -> float:
    """A bell around ``centre`` (hours) on the 24-hour circle, 1.0 at its peak."""
    distance = (hour - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (distance / width) ** 2)


def _wall_seconds() -> float:
    now = datetime.now()  # local time on purpose: the curve follows the site's day
    return now.hour * 3600.0 + now.minute * 60.0 + now.second + now.microsecond / 1e6


class DayClock:
    """The simulated time of day.

    Without ``time_of_day`` and at ``acceleration`` 1 it follows the local wall clock. Otherwise
    it starts at ``time_of_day`` (or the wall clock) and advances ``acceleration`` simulated
    seconds per real second, wrapping at midnight, so a scenario can run a day in minutes.

    Args:
        time_of_day: Seconds since midnight to start at; ``None`` for the local wall clock.
        acceleration: Simulated seconds per real second (> 0).

    Raises:
        ValueError: ``acceleration`` is not positive or ``time_of_day`` is not finite.
    """

    def __init__(self, time_of_day: float | None = None, acceleration: float = 1.0) -> None:
        if not acceleration > 0 or not math.isfinite(acceleration):
            raise ValueError(f"acceleration must be a positive number, got {acceleration}")
        if time_of_day is not None and not math.isfinite(time_of_day):
            raise ValueError(f"time_of_day must be seconds since midnight, got {time_of_day}")
        self.acceleration = acceleration
        self._follow_wall = time_of_day is None and acceleration == 1.0
        self._seconds = _wall_seconds() if time_of_day is None else time_of_day % DAY_SECONDS

    @property
    def seconds(self) -> float:
        """Seconds since midnight, 0 ≤ s < 86400."""
        return self._seconds

    @property
    def hour(self) -> float:
        """Hours since midnight as a fraction, 0 ≤ h < 24."""
        return self._seconds / 3600.0

    def advance(self, dt: float) -> float:
        """Move on by ``dt`` real seconds; returns the simulated seconds that passed."""
        elapsed = dt * self.acceleration
        if self._follow_wall:
            self._seconds = _wall_seconds()
        else:
            self._seconds = (self._seconds + elapsed) % DAY_SECONDS
        return elapsed

    def set(self, seconds: float, acceleration: float | None = None) -> None:
        """Jump to ``seconds`` since midnight (and optionally change the acceleration)."""
        if acceleration is not None:
            if not acceleration > 0:
                raise ValueError(f"acceleration must be positive, got {acceleration}")
            self.acceleration = acceleration
        self._seconds = seconds % DAY_SECONDS
        self._follow_wall = False

    def __str__(self) -> str:
        whole = int(self._seconds)
        return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Params:
    """Typed access to an action's parameters; a malformed one raises ActionError."""

    def __init__(self, action: str, params: Mapping[str, Any]) -> None:
        self.action = action
        self._params = dict(params)

    def has(self, key: str) -> bool:
        return key in self._params

    def get(self, key: str, default: Any = None) -> Any:
        return self._params.get(key, default)

    def number(self, key: str, default: float | None = None, *, low: float | None = None,
               high: float | None = None) -> float:
        """A finite number within ``[low, high]``; ``default`` when absent (else required)."""
        value = self._params.get(key, default)
        if value is None:
            raise self.error(f"parameter {key!r} is required")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise self.error(f"{key} must be a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                bounds = f"within {low:g}..{high:g}"
            else:
                bounds = f">= {low:g}" if low is not None else f"<= {high:g}"
            raise self.error(f"{key} must be {bounds}, got {value}")
        return float(value)

    def optional_number(self, key: str, *, low: float | None = None,
                        high: float | None = None) -> float | None:
        return self.number(key, low=low, high=high) if key in self._params else None

    def time_of_day(self, key: str) -> float:
        """``"HH:MM"``, ``"HH:MM:SS"`` or seconds since midnight."""
        value = self.get(key)
        if isinstance(value, str) and (m := _HHMM.match(value.strip())):
            h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
            if h < 24 and mi < 60 and s < 60:
                return h * 3600.0 + mi * 60.0 + s
        elif isinstance(value, int | float) and not isinstance(value, bool) \
                and 0 <= value < DAY_SECONDS:
            return float(value)
        raise self.error(f"{key} must be HH:MM[:SS] or seconds since midnight, got {value!r}")

    def error(self, message: str) -> ActionError:
        return ActionError(f"{self.action}: {message}")


@dataclass
class Condition:
    """An injected abnormal condition, until ``restore`` or until it runs out.

    Attributes:
        kind: The action that made it (``voltage_sag``, ``overload``...).
        phase: Phase index 0..2, or ``None`` for the whole meter.
        value: Its magnitude in the action's unit (V, % of rated current, kW, l/h).
        until: Real seconds of :meth:`MeterSimBase.step` time at which it ends, or ``None``.
        silent: ``power_loss`` with ``mode: silent``: the unit stops answering too.
    """

    kind: str
    phase: int | None
    value: float
    until: float | None = None
    silent: bool = False

    def describe(self) -> str:
        where = "" if self.phase is None else f" L{self.phase + 1}"
        size = f" {self.value:g}" if self.value else ""
        return f"{self.kind}{where}{size}{' (silent)' if self.silent else ''}"


_FAULT_ACTIONS: list[Action] = [
    Action("silent", "the meter stops answering (the gateway sees comm-loss)"),
    Action("slow", "answer every request late", {"seconds": "delay, default 2"}),
    Action("exception", "answer with a Modbus exception",
           {"code": "exception code 1..255, default 4 (server device failure)"}),
    Action("corrupt", "answer with damaged frames (bad CRC on RTU, bad length on TCP)"),
    Action("garbage", "answer with well-framed nonsense (undefined function code)"),
    Action("out_of_range", "make one register show an absurd value until clear_faults",
           {"point": "register name, default the first of the map",
            "value": "engineering value, default 9999; \"nan\" or \"inf\" for float registers"}),
    Action("clear_faults", "end silent/slow/exception/corrupt/garbage/out_of_range"),
    Action("set_time", "jump the simulated time of day",
           {"at": "HH:MM[:SS] or seconds since midnight",
            "acceleration": "simulated seconds per real second (optional)"}),
]


class MeterSimBase(abc.ABC):
    """One simulated meter on one Modbus unit; see the subclasses.

    Args:
        name: Id used by scenarios, e.g. ``M07``.
        register_map: Layout of its registers.
        unit_id: Modbus unit (slave) id.
        seed: Seeds every random choice, so runs repeat.
        time_of_day: Start time, seconds since midnight; ``None`` follows the local clock.
        acceleration: Simulated seconds per real second.
        noise: Scale of the random measurement noise; 0 makes values exact and repeatable.
        tick: Seconds between updates in :meth:`run`.

    Raises:
        ValueError: A negative noise, a non-positive tick or acceleration, a unit id > 255.
    """

    kind: ClassVar[str] = "meter"

    def __init__(self, name: str, *, register_map: RegisterMap, unit_id: int, seed: int,
                 time_of_day: float | None, acceleration: float, noise: float,
                 tick: float) -> None:
        if not 0 <= unit_id <= 255:
            raise ValueError(f"{name}: unit id must be 0..255, got {unit_id}")
        if noise < 0 or tick <= 0:
            raise ValueError(f"{name}: noise must be >= 0 and tick > 0, got {noise}, {tick}")
        self.name = name
        self.register_map = register_map
        self.unit = SimUnit(unit_id)
        self.clock = DayClock(time_of_day, acceleration)
        self.noise = noise
        self.tick = tick
        self._rng = random.Random(seed)
        self._elapsed = 0.0
        self._values: dict[str, float] = {}
        self._overrides: dict[str, float] = {}
        self._conditions: dict[tuple[str, int | None], Condition] = {}

    # -- subclass hooks

    @abc.abstractmethod
    def _compute(self) -> dict[str, float]:
        """The register map's engineering values now (may draw noise)."""

    @abc.abstractmethod
    def _integrate(self, sim_seconds: float) -> None:
        """Advance the totals (energy, volume) by ``sim_seconds`` at the current rate."""

    def _own_actions(self) -> list[Action]:
        return []

    def _handlers(self) -> dict[str, Callable[[Params], str]]:
        return {}

    # -- running

    @property
    def model(self) -> str:
        """Model id of the register map (``sdm630``, ``dtsu666``, ``water``)."""
        return self.register_map.model

    @property
    def values(self) -> dict[str, float]:
        """The engineering values the registers hold now (without out_of_range overrides)."""
        return dict(self._values)

    def step(self, dt: float) -> None:
        """Advance the simulation by ``dt`` real seconds and update the registers."""
        self._elapsed += dt
        sim_seconds = self.clock.advance(dt)
        for key, cond in list(self._conditions.items()):
            if cond.until is not None and cond.until <= self._elapsed:
                del self._conditions[key]
                if cond.silent:
                    self.unit.faults.silent = False
        self._integrate(sim_seconds)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the values at the current time and push them to the registers."""
        self._values = self._compute()
        image = self.register_map.image({**self._values, **self._overrides})
        for table, words in image.items():
            (self.unit.input if table == "input" else self.unit.holding).update(words)

    async def run(self) -> None:
        """Update the meter every ``tick`` seconds until cancelled."""
        await step_every(self.tick, self.step)

    def snapshot(self) -> dict[str, Any]:
        """The meter's state: engineering values, time of day, conditions and faults."""
        faults = self.unit.faults
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "unit_id": self.unit.unit_id,
            "time_of_day": str(self.clock),
            "acceleration": self.clock.acceleration,
            "values": dict(self._values),
            "conditions": [c.describe() for c in self._conditions.values()],
            "faults": {"silent": faults.silent, "delay": faults.delay,
                       "exception": faults.exception, "corrupt": faults.corrupt,
                       "garbage": faults.garbage,
                       "out_of_range": dict(self._overrides)},
        }

    # -- actions

    def actions(self) -> list[Action]:
        """Everything :meth:`apply` accepts."""
        return [*self._own_actions(),
                Action("restore", "back to normal: end every injected condition and fault"),
                *_FAULT_ACTIONS]

    def apply(self, action: str, params: Mapping[str, Any]) -> str:
        """Do ``action`` now and update the registers; returns one line saying what happened.

        Raises:
            ActionError: Unknown action, or a parameter that is missing, unknown or invalid.
        """
        handlers: dict[str, Callable[[Params], str]] = {
            **self._handlers(),
            "restore": self._restore,
            "silent": self._silent,
            "slow": self._slow,
            "exception": self._exception,
            "corrupt": self._corrupt,
            "garbage": self._garbage,
            "out_of_range": self._out_of_range,
            "clear_faults": self._clear_faults,
            "set_time": self._set_time,
        }
        listed = {a.name: a for a in self.actions()}
        handler = handlers.get(action)
        if handler is None or action not in listed:
            raise ActionError(f"{self.name}: unknown action {action!r}; known: "
                              f"{', '.join(sorted(listed))}")
        allowed = listed[action].params or {}
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            # A typo must not pass silently (e.g. "percnt" would sag to the default).
            raise ActionError(f"{self.name}: {action}: unknown parameter(s) "
                              f"{', '.join(unknown)}; expected: "
                              f"{', '.join(allowed) or 'none'}")
        try:
            message = handler(Params(action, params))
        except ActionError as exc:
            raise ActionError(f"{self.name}: {exc}") from None
        self.refresh()
        return f"{self.name}: {message}"

    def _add(self, cond: Condition, p: Params) -> None:
        duration = p.optional_number("duration", low=0)
        if duration is not None:
            cond.until = self._elapsed + duration
        self._conditions[(cond.kind, cond.phase)] = cond

    def _active(self, kind: str, phase: int | None = None) -> Condition | None:
        return self._conditions.get((kind, phase))

    def _restore(self, p: Params) -> str:
        self._conditions.clear()
        self._overrides.clear()
        self.unit.faults.clear()
        return "back to normal"

    def _silent(self, p: Params) -> str:
        self.unit.faults.silent = True
        return "stops answering"

    def _slow(self, p: Params) -> str:
        self.unit.faults.delay = p.number("seconds", 2.0, low=0, high=60)
        return f"answers after {self.unit.faults.delay:g} s"

    def _exception(self, p: Params) -> str:
        code = p.number("code", 4, low=1, high=255)
        if not code.is_integer():
            raise p.error(f"code must be a whole number, got {code}")
        self.unit.faults.exception = int(code)
        return f"answers with exception code {int(code)}"

    def _corrupt(self, p: Params) -> str:
        self.unit.faults.corrupt = True
        return "sends damaged frames"

    def _garbage(self, p: Params) -> str:
        self.unit.faults.garbage = True
        return "answers with well-framed nonsense"

    def _out_of_range(self, p: Params) -> str:
        registers = self.register_map.registers
        name = p.get("point", next(iter(registers)))
        reg = registers.get(name) if isinstance(name, str) else None
        if reg is None:
            raise p.error(f"point must be one of {', '.join(registers)}, got {name!r}")
        raw = p.get("value", 9999.0)
        if isinstance(raw, str) and raw.strip().lower() in ("nan", "inf", "-inf"):
            value = float(raw.strip())
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        else:
            raise p.error(f"value must be a number, 'nan' or 'inf', got {raw!r}")
        try:
            reg.raw(value)
        except (ValueError, OverflowError) as exc:
            raise p.error(f"{name}: {exc}") from None
        self._overrides[name] = value
        return f"{name} shows {value:g} {reg.unit}".rstrip()

    def _clear_faults(self, p: Params) -> str:
        self.unit.faults.clear()
        self._overrides.clear()
        return "faults cleared"

    def _set_time(self, p: Params) -> str:
        seconds = p.time_of_day("at")
        acceleration = p.optional_number("acceleration", low=1e-3, high=1e6)
        self.clock.set(seconds, acceleration)
        return f"time of day {self.clock} (x{self.clock.acceleration:g})"


async def step_every(tick: float, step: Callable[[float], None]) -> None:
    """Call ``step`` with the seconds elapsed (event-loop time) every ``tick`` seconds, until
    cancelled: a late wake-up moves the meters by the time that really passed."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        step(now - last)
        last = now
