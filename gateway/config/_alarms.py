"""The alarm lifecycle's settings: journal, shelving, suppression by design, floods, chattering."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from gateway.config._types import Duration, Identifier
from gateway.config._types import StrictModel as _Model

__all__ = [
    "AlarmsConfig",
    "ChatterConfig",
    "FloodConfig",
    "JournalConfig",
    "SuppressionRule",
]

# --------------------------------------------------------------------------- alarm lifecycle

_Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class SuppressionRule(_Model):
    """Suppression by design (ISA-18.2): while an alarm of one category is active, alarms of
    other categories at the same location are evaluated and journaled but not announced."""

    id: Identifier
    while_active: list[_Category] = Field(
        min_length=1, description="Categories whose active condition suppresses, e.g. "
                                  "[fire_alarm].")
    suppress: list[_Category] = Field(
        min_length=1, description="Categories it suppresses, e.g. [door_held_open]. P0 "
                                  "alarms are never suppressed.")
    same: list[Literal["building", "floor", "zone", "room"]] = Field(
        default=["zone"],
        description="Location fields that must be set and equal on both alarms; [] = "
                    "anywhere on the site.")

    @model_validator(mode="after")
    def _disjoint(self) -> SuppressionRule:
        both = set(self.while_active) & set(self.suppress)
        if both:
            raise ValueError(f"a category cannot suppress itself: {', '.join(sorted(both))}")
        return self


class FloodConfig(_Model):
    """Alarm flood (ISA-18.2): more than ``start_above`` new alarms within ``window``; it ends
    when fewer than ``end_below`` remain in the (sliding) window."""

    start_above: int = Field(default=10, ge=1)
    end_below: int = Field(default=5, ge=1)
    window: Duration = Field(default=600.0, gt=0)
    individual: list[Literal["P0", "P1", "P2", "P3"]] = Field(
        default=["P0", "P1"],
        description="Priorities still announced one by one during a flood; the others are "
                    "grouped. Must include P0.")

    @model_validator(mode="after")
    def _consistent(self) -> FloodConfig:
        if self.end_below > self.start_above:
            raise ValueError(f"end_below ({self.end_below}) must be <= start_above "
                             f"({self.start_above})")
        if "P0" not in self.individual:
            raise ValueError("individual must include P0: life-safety alarms are never grouped")
        return self


class ChatterConfig(_Model):
    """Chattering: at least ``activations`` activations of one alarm within ``window``."""

    activations: int = Field(default=3, ge=2)
    window: Duration = Field(default=60.0, gt=0)


class JournalConfig(_Model):
    """The SQLite alarm journal: every alarm event and operator action, before publishing."""

    path: Literal[":memory:"] | Path | None = Field(
        default=None,
        description="SQLite file (relative: under state_dir). Default: "
                    "<state_dir>/alarms-<site id>-<gateway id>.sqlite3 when state_dir is set "
                    "in the file, otherwise in memory (not durable; logged at start).")
    max_age: Duration = Field(default=90 * 86400.0, gt=0,
                              description="Journal entries older than this are deleted.")
    max_rows: int = Field(default=200_000, ge=1000,
                          description="At most this many journal entries are kept (oldest "
                                      "deleted first).")


class AlarmsConfig(_Model):
    """The alarm lifecycle: journal, shelving, flood and chatter, suppression by design."""

    journal: JournalConfig = Field(default_factory=JournalConfig)
    shelve_max: Duration = Field(default=8 * 3600.0, gt=0,
                                 description="Longest shelving an operator may ask for.")
    close_unacknowledged_after: Duration | None = Field(
        default=3600.0, gt=0,
        description="An alarm back to normal but never acknowledged is closed by the system "
                    "after this long (null: wait for an operator). Latched alarms are not.")
    flood: FloodConfig = Field(default_factory=FloodConfig)
    chatter: ChatterConfig = Field(default_factory=ChatterConfig)
    suppression: list[SuppressionRule] = Field(
        default_factory=lambda: [SuppressionRule(
            id="fire-releases-doors", while_active=["fire_alarm"],
            suppress=["door_held_open", "door_forced"], same=["zone"])],
        description="Default: during a fire alarm, doors held or pushed open in the same zone "
                    "are evacuation, not intrusion. A list given here replaces the default.")

    @model_validator(mode="after")
    def _unique_ids(self) -> AlarmsConfig:
        ids = [r.id for r in self.suppression]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"suppression ids used twice: {', '.join(dupes)}")
        return self
