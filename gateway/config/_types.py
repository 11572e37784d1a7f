"""Small value types shared by the config models."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["Duration", "Identifier", "StrictModel", "Value", "map_key", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
#: A compound duration: ``23h30m``, ``1h 30m``, ``1m30s`` (every part with its unit, larger first).
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)")
_ORDER = ("d", "h", "m", "s", "ms")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> Any:
    """Accept ``30``, ``2.5``, ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"`` and compounds
    such as ``"23h30m"``; return seconds.

    Anything else is passed through unchanged so pydantic reports it with its own message.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is not None:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
        seconds = _compound(value)
        if seconds is None:
            shown = repr(value) if len(value) <= 40 else repr(value[:37]) + "..."
            raise ValueError(
                f"expected a duration such as 30, '250ms', '30s', '5m', '1h', '23h30m', "
                f"got {shown}")
        return seconds
    return value


def _compound(text: str) -> float | None:
    """``23h30m`` in seconds; None unless every part has a unit and larger units come first."""
    end, total, last = 0, 0.0, -1
    for match in _PART.finditer(text):
        if match.start() != end:
            return None
        unit = "m" if match.group(2) == "min" else match.group(2)
        rank = _ORDER.index(unit)
        if rank <= last:
            return None
        total, end, last = total + float(match.group(1)) * _UNIT_SECONDS[unit], match.end(), rank
    return total if end and not text[end:].strip() else None


#: Seconds; YAML may say ``30``, ``"30s"``, ``"5m"``, ``"250ms"``.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]

#: Ids appear in MQTT topics, URLs and logs, so they are restricted to a safe alphabet.
Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="letters, digits, '_', '-', '.'; starts with a letter or digit",
    ),
]


#: A scalar a point or a config value may hold.
Value = bool | int | float | str


def map_key(key: Any) -> str:
    """A value map's key as text: YAML ``0``, ``0.0`` and ``"0"`` are all ``"0"``, and
    ``true``/``false`` are ``"true"``/``"false"``."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def _keys_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {map_key(k): v for k, v in value.items()}
    return value


#: A value map (``{0: stopped, 1: running}``): its keys compared as text (see :func:`map_key`).
ValueMap = Annotated[dict[str, Value], BeforeValidator(_keys_as_text)]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable, and numbers
    are finite (YAML's ``.nan`` and ``.inf`` would make a threshold, scale or duration
    silently never match, or never end).

    Validators are built on first use (``defer_build``): GatewayConfig's contains every
    section's, so a section's own is built only if it is validated alone, and a gateway keeps
    no second copy of each (0.3 MB resident). Model defaults are factories for the same reason:
    an instance made at import builds its model's validator there."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False, defer_build=True)
