"""Register maps of the simulated energy and water meters, as data.

Each map is the documented register layout of one meter model. The bundled profiles
(``config/profiles/eastron-sdm630.yaml``, ``chint-dtsu666.yaml``, ``water-meter-modbus.yaml``) are
the gateway's copies; ``tests/test_sim_meters.py`` checks every point of each profile against
its map (address, table, type, scale, unit), so the two cannot drift apart silently.

Addresses are 0-based protocol addresses. Engineering value = raw × ``scale``.

Eastron SDM630 (docs/facility-rules.md#meter-registers): FC 04 input registers, float32
big-endian with the high word first, already in engineering units.

Chint DTSU666 (docs/facility-rules.md#meter-registers): float32 registers that hold the
*scaled* number, e.g. 2301.0 for 230.1 V, so the profile multiplies by 0.1. The live block is
read with FC 04 as OpenEMS ``MeterChintDtsu666Impl`` does (its readme: "DTSU666 uses FC4 / input
registers for the verified live register map"); its unit test vectors fix the scales: 0x4510
0x5000 = 2309.0 → 230.9 V, 0x4466 0x0000 = 920.0 → PF 0.920. Many inverters read the same
registers with FC 03, so the simulator answers on the holding table too (``mirror``).

Water meter: propgw's own generic layout (no common standard): FC 03 holding registers, which is
all many RS-485 water meters implement. Flow rate float32 in m³/h; the total as uint32 in litres,
which counts exactly (a float32 total loses litres above 2²⁴ L = 16 777 m³) and decodes to m³
with ``scale: 0.001``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from simulators.encoding import encode, register_count

__all__ = [
    "DTSU666_MAP",
    "REGISTER_MAPS",
    "SDM630_MAP",
    "WATER_METER_MAP",
    "Register",
    "RegisterMap",
    "Table",
]

Table = Literal["holding", "input"]

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


@dataclass(frozen=True, slots=True)
class Register:
    """One value in a meter's register map.

    Attributes:
        address: 0-based protocol address of its first register.
        table: ``input`` (FC 04) or ``holding`` (FC 03).
        type: Modbus type as written in profiles (``float32``, ``uint32``...).
        scale: Engineering value = raw × scale (the profile point's ``scale``).
        unit: Engineering unit of the scaled value.
        description: What it is, in the vendor's words where there are some.
    """

    address: int
    table: Table
    type: str
    scale: float
    unit: str
    description: str

    def raw(self, value: float) -> list[int]:
        """The registers a meter shows for the engineering ``value``.

        Raises:
            ValueError: ``value`` cannot be represented in this register's type (NaN or out
                of range for an integer type).
        """
        raw = value / self.scale
        if self.type in _INT_RANGES:
            low, high = _INT_RANGES[self.type]
            if not math.isfinite(raw) or not low <= round(raw) <= high:
                raise ValueError(f"{value} does not fit a {self.type} with scale {self.scale}")
        return encode(raw, self.type)

    @property
    def width(self) -> int:
        """Registers it occupies."""
        return register_count(self.type)


@dataclass(frozen=True)
class RegisterMap:
    """The register layout of one meter model.

    Attributes:
        model: Short model id (``sdm630``, ``dtsu666``, ``water``).
        profile: Name of the bundled profile that copies this map.
        registers: Point name → register; the names are the profile's point names.
        mirror: Another table on which the device answers the same addresses, or ``None``.
        source: Where the layout comes from.
    """

    model: str
    profile: str
    registers: Mapping[str, Register]
    mirror: Table | None
    source: str

    def image(self, values: Mapping[str, float]) -> dict[Table, dict[int, int]]:
        """Encode engineering ``values`` (one per register name) into register tables.

        Raises:
            KeyError: A register of the map has no value.
            ValueError: A value does not fit its register (see :meth:`Register.raw`).
        """
        tables: dict[Table, dict[int, int]] = {}
        for name, reg in self.registers.items():
            words = reg.raw(values[name])
            for table in (reg.table, self.mirror):
                if table is None:
                    continue
                target = tables.setdefault(table, {})
                for i, word in enumerate(words):
                    target[reg.address + i] = word
        return tables


def _map(entries: dict[str, tuple[int, Table, str, float, str, str]]) -> Mapping[str, Register]:
    return MappingProxyType({name: Register(*spec) for name, spec in entries.items()})


#: Eastron SDM630 (three-phase): FC 04, float32, engineering units.
SDM630_MAP = RegisterMap(
    model="sdm630",
    profile="eastron-sdm630",
    mirror=None,
    source="docs/facility-rules.md#meter-registers; Eastron SDM630 Modbus protocol (input "
           "registers 30001-30343)",
    registers=_map({
        "voltage_l1": (0x0000, "input", "float32", 1.0, "V", "phase 1 line to neutral volts"),
        "voltage_l2": (0x0002, "input", "float32", 1.0, "V", "phase 2 line to neutral volts"),
        "voltage_l3": (0x0004, "input", "float32", 1.0, "V", "phase 3 line to neutral volts"),
        "current_l1": (0x0006, "input", "float32", 1.0, "A", "phase 1 current"),
        "current_l2": (0x0008, "input", "float32", 1.0, "A", "phase 2 current"),
        "current_l3": (0x000A, "input", "float32", 1.0, "A", "phase 3 current"),
        "power_l1": (0x000C, "input", "float32", 1.0, "W", "phase 1 active power"),
        "power_l2": (0x000E, "input", "float32", 1.0, "W", "phase 2 active power"),
        "power_l3": (0x0010, "input", "float32", 1.0, "W", "phase 3 active power"),
        "power_factor_l1": (0x001E, "input", "float32", 1.0, "", "phase 1 power factor"),
        "power_factor_l2": (0x0020, "input", "float32", 1.0, "", "phase 2 power factor"),
        "power_factor_l3": (0x0022, "input", "float32", 1.0, "", "phase 3 power factor"),
        "power_total": (0x0034, "input", "float32", 1.0, "W", "total system power"),
        "power_factor": (0x003E, "input", "float32", 1.0, "", "total system power factor"),
        "frequency": (0x0046, "input", "float32", 1.0, "Hz", "frequency of supply voltages"),
        "import_kwh": (0x0048, "input", "float32", 1.0, "kWh", "total import active energy"),
        "export_kwh": (0x004A, "input", "float32", 1.0, "kWh", "total export active energy"),
        "total_kwh": (0x0156, "input", "float32", 1.0, "kWh", "total active energy"),
    }),
)

#: Chint DTSU666 (three-phase, four-wire): float32 holding the scaled number; FC 04 (and 03).
DTSU666_MAP = RegisterMap(
    model="dtsu666",
    profile="chint-dtsu666",
    mirror="holding",
    source="docs/facility-rules.md#meter-registers; OpenEMS io.openems.edge.meter.chint "
           "dtsu666/MeterChintDtsu666Impl.java and its unit test",
    registers=_map({
        "voltage_l1": (0x2006, "input", "float32", 0.1, "V", "Ua, 0.1 V"),
        "voltage_l2": (0x2008, "input", "float32", 0.1, "V", "Ub, 0.1 V"),
        "voltage_l3": (0x200A, "input", "float32", 0.1, "V", "Uc, 0.1 V"),
        "current_l1": (0x200C, "input", "float32", 0.001, "A", "Ia, 0.001 A"),
        "current_l2": (0x200E, "input", "float32", 0.001, "A", "Ib, 0.001 A"),
        "current_l3": (0x2010, "input", "float32", 0.001, "A", "Ic, 0.001 A"),
        "power_total": (0x2012, "input", "float32", 0.1, "W", "Pt, total active power, 0.1 W"),
        "power_l1": (0x2014, "input", "float32", 0.1, "W", "Pa, 0.1 W"),
        "power_l2": (0x2016, "input", "float32", 0.1, "W", "Pb, 0.1 W"),
        "power_l3": (0x2018, "input", "float32", 0.1, "W", "Pc, 0.1 W"),
        "power_factor": (0x202A, "input", "float32", 0.001, "", "PFt, total power factor, "
                                                                 "0.001"),
        "frequency": (0x2044, "input", "float32", 0.01, "Hz", "Freq, 0.01 Hz"),
        "import_kwh": (0x4000, "input", "float32", 1.0, "kWh", "ImpEp, total import active "
                                                               "energy"),
    }),
)

#: propgw's generic Modbus water meter: FC 03.
WATER_METER_MAP = RegisterMap(
    model="water",
    profile="water-meter-modbus",
    mirror=None,
    source="propgw generic water meter layout (simulators/meter_maps.py)",
    registers=_map({
        "flow_rate": (0x0000, "holding", "float32", 1.0, "m³/h", "instantaneous flow rate"),
        "total_volume": (0x0002, "holding", "uint32", 0.001, "m³", "totaliser, counted in "
                                                                   "whole litres"),
    }),
)

#: Model id → map.
REGISTER_MAPS: Mapping[str, RegisterMap] = MappingProxyType(
    {m.model: m for m in (SDM630_MAP, DTSU666_MAP, WATER_METER_MAP)})
