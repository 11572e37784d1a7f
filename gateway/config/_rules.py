"""Rules: a condition on a device (or a group of devices), delays, category, priority, text."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from gateway.config._conditions import (
    ALL_POINTS,
    Condition,
    condition_points,
    edge_holds,
    uses_quantifiers,
)
from gateway.config._types import Duration, Identifier
from gateway.config._types import StrictModel as _Model

__all__ = [
    "Message",
    "RuleConfig",
]

# --------------------------------------------------------------------------- rules


class Message(_Model):
    """Operator text; ``{device}``, ``{device_name}``, ``{location}`` and point names in
    braces are replaced with current values."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class RuleConfig(_Model):
    """Raises an alarm when ``when`` has held for ``for`` seconds on a device."""

    id: Identifier
    description: str | None = None
    devices: list[str] | None = Field(default=None, description="Device ids it applies to.")
    kind: str | None = Field(default=None, description="Or: every device of this kind.")
    when: Condition
    for_: Duration = Field(default=0.0, alias="for", description="On-delay.")
    clear_for: Duration = Field(default=0.0, description="Off-delay before returning to "
                                                         "normal.")
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$",
                          description="e.g. elevator_entrapment, fire_alarm.")
    priority: Literal["P0", "P1", "P2", "P3"]
    message: Message
    work_order: bool = Field(default=True, description="Raise a work order upstream.")
    latching: bool = Field(
        default=False,
        description="After its condition ends the alarm stays latched until an operator "
                    "acknowledges and resets it.")
    realarm_after: Duration | None = Field(
        default=None, gt=0,
        description="Announce the alarm again (unacknowledged) when it is still active this "
                    "long after it was last announced or acknowledged.")
    group_by: Literal["site", "building", "floor", "zone", "room"] | None = Field(
        default=None,
        description="Evaluate once per group of the selected devices sharing this location "
                    "field (site = all of them), with all_devices/any_device in 'when'.")

    @model_validator(mode="after")
    def _has_target(self) -> RuleConfig:
        if (self.devices is None) == (self.kind is None):
            raise ValueError("give exactly one of 'devices' (a list of ids) or 'kind'")
        quantified = uses_quantifiers(self.when)
        if self.group_by is not None and not quantified:
            raise ValueError("a group_by rule needs all_devices or any_device in 'when'")
        if self.group_by is None and quantified:
            raise ValueError("all_devices/any_device need 'group_by' (site, building, floor, "
                             "zone or room)")
        short = [h for h in edge_holds(self.when) if h <= self.for_]
        if short:
            raise ValueError(f"'for' ({self.for_:g} s) is not shorter than the 'hold' of a "
                             f"'becomes' condition ({min(short):g} s): a change is true only "
                             f"for 'hold' after it happens, so the alarm could never fire; "
                             f"make 'hold' longer than 'for'")
        return self

    def points(self) -> set[str]:
        """Point names the condition reads."""
        return condition_points(self.when) - {ALL_POINTS}


RuleConfig.model_rebuild()
