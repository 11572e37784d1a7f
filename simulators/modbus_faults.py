"""Fault-injection actions shared by every Modbus simulator (they act on its SimUnit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulators.base import Action, ActionError
from simulators.modbus_server import SimUnit

__all__ = ["MODBUS_FAULT_ACTIONS", "apply_modbus_fault", "fault_state"]

MODBUS_FAULT_ACTIONS = [
    Action("silent", "stop answering (the gateway times out)"),
    Action("slow", "answer late", {"seconds": "delay per answer"}),
    Action("exception", "answer every request with a Modbus exception",
           {"code": "1 illegal function, 2 illegal address, 4 device failure, 6 busy, "
                    "11 gateway target failed"}),
    Action("corrupt", "answer with damaged frames (bad CRC / length)"),
    Action("garbage", "answer with well-framed nonsense (undefined function code)"),
    Action("clear_faults", "answer normally again"),
]


def apply_modbus_fault(unit: SimUnit, action: str, params: Mapping[str, Any]) -> bool:
    """Apply a fault action to ``unit``; False when ``action`` is not a fault action."""
    faults = unit.faults
    if action == "silent":
        faults.silent = True
    elif action == "slow":
        faults.delay = _number(params, "seconds", 2.0)
    elif action == "exception":
        code = int(_number(params, "code", 4))
        if not 1 <= code <= 11:
            raise ActionError(f"Modbus exception code must be 1..11, got {code}")
        faults.exception = code
    elif action == "corrupt":
        faults.corrupt = True
    elif action == "garbage":
        faults.garbage = True
    elif action == "clear_faults":
        faults.clear()
    else:
        return False
    return True


def fault_state(unit: SimUnit) -> dict[str, Any]:
    f = unit.faults
    return {k: v for k, v in (("silent", f.silent), ("delay", f.delay),
                              ("exception", f.exception), ("corrupt", f.corrupt),
                              ("garbage", f.garbage)) if v}


def _number(params: Mapping[str, Any], key: str, default: float) -> float:
    try:
        return float(params.get(key, default))
    except (TypeError, ValueError):
        raise ActionError(f"parameter {key!r} must be a number") from None
