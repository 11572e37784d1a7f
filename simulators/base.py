"""What every simulated device offers to scenarios, the CLI and the interactive control.

A simulator is driven by *actions*: named commands with keyword parameters
(``stop_between_floors``, ``fire`` with ``zone: 3``, ``voltage_sag`` with ``phase: a, to: 160``).
Scenarios call them on a timeline, engineers call them by hand during commissioning, and
``propgw sim list`` shows them. Faults (``silent``, ``slow``, ``malformed``...) are actions too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Action", "ActionError", "Simulator"]


@dataclass(frozen=True)
class Action:
    """One command a simulator understands."""

    name: str
    help: str
    #: parameter name -> short description (with its default, if any)
    params: Mapping[str, str] | None = None


class ActionError(ValueError):
    """An action is unknown to a simulator or its parameters are wrong."""


class Simulator(Protocol):
    """A simulated device (or a bus of them) that speaks a real wire protocol."""

    @property
    def name(self) -> str:
        """The id scenarios use for it, e.g. ``E1`` or ``FACP-1``."""
        ...

    @property
    def kind(self) -> str:
        """``elevator``, ``fire_panel``, ``access_control``, ``energy_meter``, ``water_meter``."""
        ...

    def actions(self) -> list[Action]:
        """Everything :meth:`apply` accepts, for ``propgw sim list`` and docs."""
        ...

    def apply(self, action: str, params: Mapping[str, Any]) -> str:
        """Do ``action`` now; returns one human line saying what happened.

        Raises:
            ActionError: unknown action or bad parameters (the message says which).
        """
        ...

    def snapshot(self) -> dict[str, Any]:
        """The device's current state, for the console and ``propgw sim device``."""
        ...

    async def run(self) -> None:
        """Simulate (and serve/publish) until cancelled."""
        ...
