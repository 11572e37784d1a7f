"""Energy and water accounting: which points are cumulative registers, and how to read them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config._types import Duration, Identifier
from gateway.config._types import StrictModel as _Model

__all__ = ["BUILDING_KIND", "BUILDING_PREFIX", "DEFAULT_COUNTERS", "AccountingConfig", "Period"]

#: Device id prefix of accounting's virtual per-building devices: ``building.<name>``.
BUILDING_PREFIX = "building."
#: The ``kind`` of those devices.
BUILDING_KIND = "building"

#: The bundled meter profiles' cumulative registers: kWh imported (eastron-sdm630,
#: chint-dtsu666) and exported (eastron-sdm630), and m³ of water (water-meter-modbus).
DEFAULT_COUNTERS = ("import_kwh", "export_kwh", "total_volume")

Period = Literal["hour", "day"]
_PERIODS: tuple[Period, ...] = ("hour", "day")


class AccountingConfig(_Model):
    """Consumption per hour and per day from the meters' cumulative registers (docs/energy.md).

    Off unless the section is given; ``accounting: {}`` turns it on with the defaults.
    """

    enabled: bool = True
    counters: list[Identifier] = Field(
        default_factory=lambda: list(DEFAULT_COUNTERS), min_length=1, max_length=50,
        description="Point names that are cumulative registers (kWh, m³): every enabled "
                    "device with such a point is accounted.")
    periods: list[Period] = Field(
        default_factory=lambda: list(_PERIODS), min_length=1,
        description="Intervals to publish, aligned to site.timezone: <point>_hour, "
                    "<point>_day.")
    max_gap: Duration = Field(
        default=7 * 86400.0, ge=3600, le=366 * 86400,
        description="A meter silent for longer: its consumption over the silence is not "
                    "apportioned and the intervals it covers are not published.")
    max_per_hour: dict[Identifier, float] = Field(
        default_factory=dict,
        description="Optional plausibility limit per counter point, in its unit per hour "
                    "(e.g. {import_kwh: 500}): a larger forward jump is a replaced meter, "
                    "not consumption.")
    save_every: Duration = Field(
        default=60.0, ge=1, le=3600,
        description="The state file (last register values, open intervals) is written at "
                    "least this often while readings arrive, and soon after intervals close.")

    @field_validator("counters", "periods")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each name may appear once")
        return value

    @field_validator("max_per_hour")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in value.items() if v <= 0)
        if bad:
            raise ValueError(f"limits must be > 0 (see {', '.join(bad)})")
        return value

    @model_validator(mode="after")
    def _limits_for_counters(self) -> AccountingConfig:
        unknown = sorted(set(self.max_per_hour) - set(self.counters))
        if unknown:
            raise ValueError(f"max_per_hour: {', '.join(unknown)} is not in counters "
                             f"({', '.join(self.counters)})")
        return self

    def points_for(self, point_names: set[str]) -> set[str]:
        """The interval points accounting adds to a device with these points."""
        if not self.enabled:
            return set()
        return {f"{c}_{p}" for c in self.counters if c in point_names for p in self.periods}
