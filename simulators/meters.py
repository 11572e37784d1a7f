"""Simulated energy meters (Eastron SDM630, Chint DTSU666) and water meters over Modbus.

An :class:`EnergyMeterSim` is a three-phase meter on a residential feeder: per-phase voltage,
current, power and power factor, frequency, and an import-energy total that accumulates from
the power. The load follows a daily curve (low at night, peaks in the morning and evening) with
seeded noise. A :class:`WaterMeterSim` reports flow and a volume totaliser, with zero flow at
night. Both run on a simulated time of day that can be set and accelerated.

Each meter is one :class:`~simulators.modbus_server.SimUnit`; serve it with
:class:`~simulators.modbus_server.SimModbusServer`, or put many on one RS-485 bus or TCP gateway
with :class:`MeterBus`. The register layouts are data in :mod:`simulators.meter_maps`
(``REGISTER_MAPS``: model → map; a meter's own is ``meter.register_map``), and the bundled
profiles are checked against them by a test.

Anomalies (docs/facility-rules.md#energy-and-water-anomalies) are actions: ``voltage_sag``,
``phase_loss``, ``power_loss``, ``overload``, ``night_consumption`` and, for water,
``continuous_flow``. Wire faults (``silent``, ``slow``, ``exception``, ``corrupt``,
``garbage``, ``out_of_range``) go to the Modbus unit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from simulators.base import Action
from simulators.meter_maps import (
    DTSU666_MAP,
    REGISTER_MAPS,
    SDM630_MAP,
    WATER_METER_MAP,
    RegisterMap,
)
from simulators.meters_base import (
    DAY_SECONDS,
    Condition,
    DayClock,
    MeterSimBase,
    Params,
    bump,
    step_every,
)
from simulators.modbus_server import SimModbusServer

__all__ = [
    "DAY_SECONDS",
    "REGISTER_MAPS",
    "DayClock",
    "EnergyMeterSim",
    "EnergyModel",
    "MeterBus",
    "MeterModel",
    "MeterSim",
    "WaterMeterSim",
    "load_fraction",
    "water_demand",
]

EnergyModel = Literal["sdm630", "dtsu666"]
_ENERGY_MAPS: dict[str, RegisterMap] = {"sdm630": SDM630_MAP, "dtsu666": DTSU666_MAP}
_PHASES = {"l1": 0, "l2": 1, "l3": 2, "a": 0, "b": 1, "c": 2, "1": 0, "2": 1, "3": 2}
_NIGHT_END_H = 6.0  # the night baseline is 00:00-06:00 (docs/facility-rules.md)


def load_fraction(hour: float) -> float:
    """Share of rated current a residential feeder draws at ``hour`` (0-24), without noise.

    About 10 % at night, a morning peak near 45 % around 07:45, 20-25 % at midday and an
    evening peak near 65 % around 19:30: below the 80 % overload warning (docs/facility-rules.md).
    """
    return (0.10 + 0.35 * bump(hour, 7.75, 1.0) + 0.12 * bump(hour, 12.5, 1.5)
            + 0.55 * bump(hour, 19.5, 1.6))


def water_demand(hour: float) -> float:
    """Share of peak flow at ``hour`` (0-24): exactly 0 from 23:30 to 05:30.

    A leak shows as flow that never drops to zero (docs/facility-rules.md), so normal nights must
    have a true zero.
    """
    if hour >= 23.5 or hour < 5.5:
        return 0.0
    return min(1.0, 0.08 + 0.9 * bump(hour, 7.5, 0.9) + 0.3 * bump(hour, 12.5, 1.2)
               + 0.8 * bump(hour, 19.5, 1.4))


def _phases(p: Params, *, allow_all: bool) -> tuple[int, ...]:
    raw = p.get("phase", "all" if allow_all else None)
    key = str(raw).strip().lower() if raw is not None else ""
    if allow_all and key == "all":
        return (0, 1, 2)
    if key in _PHASES:
        return (_PHASES[key],)
    choices = "l1, l2, l3 (or a/b/c, 1/2/3)" + (", all" if allow_all else "")
    raise p.error(f"phase must be one of {choices}, got {raw!r}")


class EnergyMeterSim(MeterSimBase):
    """A three-phase energy meter (Eastron SDM630 or Chint DTSU666 register map).

    Args:
        name: Id used by scenarios, e.g. ``M07``.
        model: ``sdm630`` (FC 04, float32 in engineering units) or ``dtsu666`` (float32
            holding scaled numbers, served on FC 04 and FC 03).
        unit_id: Modbus unit (slave) id.
        seed: Seeds the phase imbalance, the initial energy total and the noise.
        nominal_voltage: Line-to-neutral voltage, V.
        rated_current: Current at 100 % load per phase, A (overload is relative to it).
        frequency: Nominal frequency, Hz.
        initial_kwh: Import total at start; default a seeded value in 1 000-20 000 kWh.
        time_of_day: Start time, seconds since midnight; ``None`` follows the local clock.
        acceleration: Simulated seconds per real second (the load curve and energy use it).
        noise: Scale of the measurement noise; 0 makes every value exact and repeatable.
        tick: Seconds between updates in :meth:`run`.

    Raises:
        ValueError: Unknown model or an impossible parameter.
    """

    kind: ClassVar[str] = "energy_meter"

    def __init__(self, name: str, *, model: EnergyModel = "sdm630", unit_id: int = 1,
                 seed: int = 0, nominal_voltage: float = 230.0, rated_current: float = 60.0,
                 frequency: float = 50.0, initial_kwh: float | None = None,
                 time_of_day: float | None = None, acceleration: float = 1.0,
                 noise: float = 1.0, tick: float = 1.0) -> None:
        if model not in _ENERGY_MAPS:
            raise ValueError(f"{name}: model must be one of {', '.join(_ENERGY_MAPS)}, "
                             f"got {model!r}")
        if nominal_voltage <= 0 or rated_current <= 0 or frequency <= 0:
            raise ValueError(f"{name}: nominal_voltage, rated_current and frequency must be "
                             f"positive")
        super().__init__(name, register_map=_ENERGY_MAPS[model], unit_id=unit_id, seed=seed,
                         time_of_day=time_of_day, acceleration=acceleration, noise=noise,
                         tick=tick)
        self.nominal_voltage = nominal_voltage
        self.rated_current = rated_current
        self.frequency = frequency
        self._imbalance = tuple(self._rng.uniform(0.85, 1.15) for _ in range(3))
        self._import_kwh = (self._rng.uniform(1_000, 20_000) if initial_kwh is None
                            else initial_kwh)
        self._export_kwh = 0.0
        self.refresh()

    def _integrate(self, sim_seconds: float) -> None:
        power = self._values.get("power_total", 0.0)
        self._import_kwh += max(power, 0.0) / 1000.0 * sim_seconds / 3600.0

    def _compute(self) -> dict[str, float]:
        hour, n, gauss = self.clock.hour, self.noise, self._rng.gauss
        load = load_fraction(hour)
        dead = self._active("power_loss") is not None
        extra = self._active("night_consumption")
        extra_w = extra.value * 1000.0 if extra is not None and hour < _NIGHT_END_H else 0.0
        volts, amps, pfs = [], [], []
        for phase in range(3):
            # The voltage droops a little as the feeder loads up.
            v = self.nominal_voltage * (1 - 0.02 * load) + n * gauss(0, 0.8)
            i = self.rated_current * load * self._imbalance[phase] * (1 + n * gauss(0, 0.03))
            pf = min(1.0, max(0.5, 0.93 + 0.04 * load + n * gauss(0, 0.005)))
            if (sag := self._active("voltage_sag", phase)) is not None:
                v = sag.value + n * gauss(0, 0.2)
            if (over := self._active("overload", phase)) is not None:
                i = self.rated_current * over.value / 100.0 * (1 + n * gauss(0, 0.01))
            if extra_w and v > 0:
                i += extra_w / 3.0 / (v * pf)
            if dead or self._active("phase_loss", phase) is not None:
                v = i = pf = 0.0
            volts.append(max(v, 0.0))
            amps.append(max(i, 0.0))
            pfs.append(pf)
        powers = [v * i * pf for v, i, pf in zip(volts, amps, pfs, strict=True)]
        apparent = sum(v * i for v, i in zip(volts, amps, strict=True))
        total = sum(powers)
        live = any(v > 0 for v in volts)
        values: dict[str, float] = {
            "power_total": total,
            "power_factor": total / apparent if apparent > 0 else 0.0,
            "frequency": self.frequency + n * gauss(0, 0.015) if live else 0.0,
            "import_kwh": self._import_kwh,
            "export_kwh": self._export_kwh,
            "total_kwh": self._import_kwh + self._export_kwh,
        }
        for phase in range(3):
            values[f"voltage_l{phase + 1}"] = volts[phase]
            values[f"current_l{phase + 1}"] = amps[phase]
            values[f"power_l{phase + 1}"] = powers[phase]
            values[f"power_factor_l{phase + 1}"] = pfs[phase]
        return {name: values[name] for name in self.register_map.registers}

    def _own_actions(self) -> list[Action]:
        duration = "real seconds until it ends by itself (optional)"
        return [
            Action("voltage_sag", "the voltage of one or all phases drops",
                   {"phase": "l1, l2, l3 or all (default all)",
                    "to": "volts", "percent": "of nominal voltage (default 80 if no 'to')",
                    "duration": duration}),
            Action("phase_loss", "one phase is lost: ~0 V, 0 A on it",
                   {"phase": "l1, l2 or l3 (required)", "duration": duration}),
            Action("power_loss", "the supply is lost on all phases",
                   {"mode": "'zero' (default): the meter reads 0 V on every phase; 'silent': "
                            "the meter loses its own supply and stops answering",
                    "duration": duration}),
            Action("overload", "the load draws more than the rated current",
                   {"phase": "l1, l2, l3 or all (default all)",
                    "percent": "of rated current, default 120", "duration": duration}),
            Action("night_consumption", "extra load between 00:00 and 06:00 (baseline "
                   "anomaly)", {"kw": "extra kW over all phases, default 2"}),
        ]

    def _handlers(self) -> dict[str, Callable[[Params], str]]:
        return {"voltage_sag": self._voltage_sag, "phase_loss": self._phase_loss,
                "power_loss": self._power_loss, "overload": self._overload,
                "night_consumption": self._night_consumption}

    def _voltage_sag(self, p: Params) -> str:
        phases = _phases(p, allow_all=True)
        if p.has("to") and p.has("percent"):
            raise p.error("give either 'to' (volts) or 'percent', not both")
        if p.has("to"):
            volts = p.number("to", low=0, high=10 * self.nominal_voltage)
        else:
            volts = self.nominal_voltage * p.number("percent", 80, low=0, high=1000) / 100.0
        for phase in phases:
            self._add(Condition("voltage_sag", phase, volts), p)
        return f"voltage on {_names(phases)} sags to {volts:g} V"

    def _phase_loss(self, p: Params) -> str:
        (phase,) = _phases(p, allow_all=False)
        self._add(Condition("phase_loss", phase, 0.0), p)
        return f"phase L{phase + 1} lost"

    def _power_loss(self, p: Params) -> str:
        mode = p.get("mode", "zero")
        if mode not in ("zero", "silent"):
            raise p.error(f"mode must be 'zero' or 'silent', got {mode!r}")
        self._add(Condition("power_loss", None, 0.0, silent=mode == "silent"), p)
        if mode == "silent":
            self.unit.faults.silent = True
            return "power lost; the meter is dark and silent"
        return "power lost on every phase"

    def _overload(self, p: Params) -> str:
        phases = _phases(p, allow_all=True)
        percent = p.number("percent", 120, low=0, high=1000)
        for phase in phases:
            self._add(Condition("overload", phase, percent), p)
        amps = self.rated_current * percent / 100.0
        verb = "draw" if len(phases) > 1 else "draws"
        return f"{_names(phases)} {verb} {percent:g} % of rated current ({amps:g} A)"

    def _night_consumption(self, p: Params) -> str:
        kw = p.number("kw", 2.0, low=0, high=1e4)
        self._add(Condition("night_consumption", None, kw), p)
        return f"{kw:g} kW extra between 00:00 and 06:00"


class WaterMeterSim(MeterSimBase):
    """A water meter: flow rate (m³/h) and a totaliser in litres (decoded as m³).

    Args:
        name: Id used by scenarios, e.g. ``W01``.
        unit_id: Modbus unit (slave) id.
        seed: Seeds the initial total and the noise.
        peak_flow: Flow at the busiest hour, m³/h.
        initial_m3: Total at start; default a seeded value in 100-5 000 m³.
        time_of_day: Start time, seconds since midnight; ``None`` follows the local clock.
        acceleration: Simulated seconds per real second.
        noise: Scale of the flow noise; 0 makes every value exact and repeatable.
        tick: Seconds between updates in :meth:`run`.

    Raises:
        ValueError: An impossible parameter.
    """

    kind: ClassVar[str] = "water_meter"

    def __init__(self, name: str, *, unit_id: int = 1, seed: int = 0, peak_flow: float = 3.0,
                 initial_m3: float | None = None, time_of_day: float | None = None,
                 acceleration: float = 1.0, noise: float = 1.0, tick: float = 1.0) -> None:
        if peak_flow <= 0:
            raise ValueError(f"{name}: peak_flow must be positive, got {peak_flow}")
        super().__init__(name, register_map=WATER_METER_MAP, unit_id=unit_id, seed=seed,
                         time_of_day=time_of_day, acceleration=acceleration, noise=noise,
                         tick=tick)
        self.peak_flow = peak_flow
        self._litres = (self._rng.uniform(100, 5_000) if initial_m3 is None
                        else initial_m3) * 1000.0
        self.refresh()

    def _integrate(self, sim_seconds: float) -> None:
        self._litres += self._values.get("flow_rate", 0.0) * 1000.0 * sim_seconds / 3600.0

    def _compute(self) -> dict[str, float]:
        demand = water_demand(self.clock.hour)
        flow = self.peak_flow * demand * max(0.0, 1 + self.noise * self._rng.gauss(0, 0.1))
        leak = self._active("continuous_flow")
        if leak is not None:
            flow += leak.value / 1000.0
        # The register counts whole litres; report what the meter shows.
        return {"flow_rate": flow, "total_volume": int(self._litres) / 1000.0}

    def _own_actions(self) -> list[Action]:
        return [Action("continuous_flow", "a leak: the flow never drops to zero",
                       {"l_h": "leak flow in litres per hour, default 30",
                        "duration": "real seconds until it ends by itself (optional)"})]

    def _handlers(self) -> dict[str, Callable[[Params], str]]:
        return {"continuous_flow": self._continuous_flow}

    def _continuous_flow(self, p: Params) -> str:
        l_h = p.number("l_h", 30.0, low=0, high=1e6)
        self._add(Condition("continuous_flow", None, l_h), p)
        return f"leaking {l_h:g} l/h"


MeterSim = EnergyMeterSim | WaterMeterSim
MeterModel = Literal["sdm630", "dtsu666", "water"]


class MeterBus:
    """Many meters behind one Modbus server: an RS-485 bus or a Modbus TCP gateway.

    An async context manager: entering starts the server, leaving stops it. :meth:`run` ticks
    every meter until cancelled (one task for the whole bus).

    Args:
        meters: The meters; their unit ids must be distinct (1..247 on a serial bus).
        serial_port: Serve Modbus RTU on this serial device (e.g. one end of a pty pair).
        host: TCP address when there is no ``serial_port``.
        port: TCP port when there is no ``serial_port``.
        baudrate: Serial settings (ignored on TCP).
        parity: Serial settings (ignored on TCP).
        bytesize: Serial settings (ignored on TCP).
        stopbits: Serial settings (ignored on TCP).
        tick: Seconds between updates in :meth:`run`.

    Raises:
        ValueError: No meters, duplicate names or unit ids, an RTU unit id outside 1..247, or
            neither a TCP port nor a serial port.
    """

    def __init__(self, meters: Sequence[MeterSim], *, serial_port: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, baudrate: int = 9600,
                 parity: str = "N", bytesize: int = 8, stopbits: int = 1,
                 tick: float = 1.0) -> None:
        names = [m.name for m in meters]
        if len(set(names)) != len(names):
            raise ValueError(f"meter names on one bus must be unique, got {names}")
        if serial_port is not None:
            wrong = [m.unit.unit_id for m in meters if not 1 <= m.unit.unit_id <= 247]
            if wrong:
                raise ValueError(f"RTU slaves are 1..247, got unit ids {wrong}")
        if tick <= 0:
            raise ValueError(f"tick must be positive, got {tick}")
        self.meters = list(meters)
        self.tick = tick
        self.server = SimModbusServer([m.unit for m in meters], host=host, port=port,
                                      serial_port=serial_port, baudrate=baudrate,
                                      parity=parity, bytesize=bytesize, stopbits=stopbits)

    @classmethod
    def build(cls, count: int, *, model: MeterModel | Sequence[MeterModel] = "sdm630",
              first_unit: int = 1, prefix: str = "M", seed: int = 0,
              time_of_day: float | None = None, acceleration: float = 1.0,
              noise: float = 1.0, **server: Any) -> MeterBus:
        """``count`` meters named ``<prefix>01``... with unit ids from ``first_unit``.

        Args:
            count: How many meters.
            model: One model for all, or a sequence cycled over the meters (a mixed bus).
            first_unit: Unit id of the first meter; the others follow.
            prefix: Name prefix.
            seed: Meter ``i`` gets seed ``seed + i``, so meters differ but runs repeat.
            time_of_day: Passed to every meter.
            acceleration: Passed to every meter.
            noise: Passed to every meter.
            **server: Keyword arguments of :class:`MeterBus` (``serial_port``, ``port``...).

        Raises:
            ValueError: See :class:`MeterBus`; also an unknown model or ``count`` < 1.
        """
        if count < 1:
            raise ValueError(f"a bus needs at least one meter, got {count}")
        models = itertools.cycle([model] if isinstance(model, str) else list(model))
        width = max(2, len(str(count)))
        meters: list[MeterSim] = []
        for i, kind in zip(range(count), models, strict=False):
            name = f"{prefix}{i + 1:0{width}d}"
            common: dict[str, Any] = {"unit_id": first_unit + i, "seed": seed + i,
                                      "time_of_day": time_of_day,
                                      "acceleration": acceleration, "noise": noise}
            if kind == "water":
                meters.append(WaterMeterSim(name, **common))
            elif kind in _ENERGY_MAPS:
                meters.append(EnergyMeterSim(name, model=kind, **common))
            else:
                raise ValueError(f"unknown meter model {kind!r}; expected one of "
                                 f"{', '.join(REGISTER_MAPS)}")
        return cls(meters, **server)

    @property
    def where(self) -> str:
        """The serial port or ``host:port`` served."""
        return self.server.where

    def meter(self, name: str) -> MeterSim:
        """The meter called ``name``.

        Raises:
            KeyError: No such meter on this bus.
        """
        for m in self.meters:
            if m.name == name:
                return m
        raise KeyError(name)

    async def __aenter__(self) -> Self:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.server.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        """Update every meter every ``tick`` seconds until cancelled."""
        await step_every(self.tick, self._step)

    def _step(self, elapsed: float) -> None:
        for m in self.meters:
            m.step(elapsed)


def _names(phases: tuple[int, ...]) -> str:
    return "all phases" if len(phases) == 3 else "/".join(f"L{p + 1}" for p in phases)

