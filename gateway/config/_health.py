"""``health:``: when the gateway calls itself degraded, and when it gives up and restarts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from gateway.config._types import Duration
from gateway.config._types import StrictModel as _Model

__all__ = ["HealthConfig"]


class HealthConfig(_Model):
    """Bounds that turn "the loop spins" into "the pipe moves"."""

    pending_warn_after: Annotated[Duration, Field(gt=0)] = Field(
        default=30.0,
        description="A message (work order, alarm) waiting for an upstream target longer than "
                    "this makes the health 'degraded', whatever the cause.")
    stall_after: Annotated[Duration, Field(gt=0)] = Field(
        default=120.0,
        description="A stage that has work waiting and has made no progress for this long, "
                    "although nothing outside the gateway stops it (e.g. a work order pending "
                    "while its upstream link says connected), is stalled: the health turns "
                    "'failing', the systemd watchdog is no longer fed and the gateway exits "
                    "so that it is restarted.")
    exit_on_failing: bool = Field(
        default=True,
        description="Exit (status 3) when the health turns 'failing', so that systemd's "
                    "Restart= starts a fresh process; false only keeps the watchdog quiet.")
    check_every: Annotated[Duration, Field(gt=0)] = Field(
        default=5.0,
        description="How often the health is judged when systemd sets no watchdog interval "
                    "(with one, at half of WatchdogSec).")
    max_restarts: int = Field(
        default=5, ge=1,
        description="A critical stage (alarms, work orders, upstream) restarted this many "
                    "times within restart_window is failing.")
    restart_window: Annotated[Duration, Field(gt=0)] = Field(
        default=600.0, description="See max_restarts.")

    @model_validator(mode="after")
    def _ordered(self) -> HealthConfig:
        if self.stall_after < self.pending_warn_after:
            raise ValueError(f"stall_after ({self.stall_after:g} s) must not be shorter than "
                             f"pending_warn_after ({self.pending_warn_after:g} s)")
        return self
