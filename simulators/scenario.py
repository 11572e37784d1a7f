"""Scenario files: a simulated site, a timeline of actions, and the alarms that must follow.

```yaml
name: entrapment-between-floors
description: E1 stops between floors with a passenger; E2 keeps running.
seed: 1
duration: 60s
devices:
  - {id: E1, kind: elevator}
  - {id: E2, kind: elevator, traffic: true}
timeline:
  - {at: 2s, elevator: E1, do: board}
  - {at: 5s, elevator: E1, do: stop_between_floors}
expect:
  alarms:    [{category: elevator_entrapment, device: E1, priority: P0, within: 40s}]
  no_alarms: [{device: E2}]
```

A step names its device with ``device:`` or with the device's kind (``elevator: E1``); every
other key of a step is a parameter of the action. Times are scenario time: ``--speed 20`` runs a
60 s scenario in 3 s of real time, the gateway and the simulators sharing one scaled clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config import Duration, YamlProblem, parse_yaml, read_limited
from simulators.kinds import KINDS

__all__ = ["KINDS", "DeviceSpec", "Expectation", "PlatformAnswer", "Scenario", "ScenarioError",
           "Step", "library", "load_scenario"]

Kind = Literal["elevator", "fire_panel", "access_control", "energy_meter", "water_meter"]


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(BaseModel):
    """One simulated device. Keys other than these are options of the simulator."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    kind: Kind
    name: str | None = None
    unit: int = Field(default=1, ge=1, le=247, description="Modbus unit id")
    bus: str | None = Field(default=None,
                            description="Modbus devices with the same bus share one server "
                                        "(a TCP gateway or RS-485 line), distinct units")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="fixed Modbus TCP port (default: a free one)")
    location: dict[str, str] = Field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Step(_Model):
    at: Duration
    device: str
    do: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: Shown to a person watching (the demo's narration); not passed to the action.
    note: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # YAML 1.1 reads the key "on:" (and "off:") as a boolean; authors mean the word.
        data = {("on" if k is True else "off" if k is False else k): v for k, v in data.items()}
        for kind in KINDS:
            if kind in data and "device" not in data:
                data["device"] = data.pop(kind)
        known = {"at", "device", "do", "params", "note"}
        extra = {k: data.pop(k) for k in list(data) if k not in known}
        data["params"] = {**extra, **data.get("params", {})}
        return data


class PlatformAnswer(_Model):
    """What the platform's people do with a work order, at a scenario time.

    The order is the first one the gateway raised for ``rule`` on ``device`` (the gateway's
    device id, as in ``expect``); the answer goes out once it is known, however late.
    """

    at: Duration
    rule: str
    device: str
    status: Literal["acknowledged", "on_site", "resolved", "rejected"]
    by: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class Expectation(_Model):
    """Alarms matching every given field (any alarm if none is given).

    ``device`` is the gateway's device id: a scenario device's id, or for MQTT simulators the
    ids their profiles produce (``FACP-1`` and ``FACP-1-zone-3``, ``door-D1``).
    """

    category: str | None = None
    device: str | None = None
    priority: Literal["P0", "P1", "P2", "P3"] | None = None
    rule: str | None = None
    within: Duration | None = Field(default=None, description="from the scenario start")

    def matches(self, *, category: str, device: str, priority: str, rule: str) -> bool:
        return all(want is None or want == got for want, got in (
            (self.category, category), (self.device, device), (self.priority, priority),
            (self.rule, rule)))


class Expect(_Model):
    alarms: list[Expectation] = Field(default_factory=list)
    no_alarms: list[Expectation] = Field(default_factory=list)


class Scenario(_Model):
    name: str
    description: str
    seed: int = 0
    duration: Duration = 60.0
    start_at: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="site-local time of day the scenario starts at (gateway clock and meter "
                    "load curves agree), e.g. '00:30' for a night scenario")
    devices: list[DeviceSpec] = Field(min_length=1)
    timeline: list[Step] = Field(default_factory=list)
    expect: Expect = Expect()
    #: Scripted platform answers, played when the run has an upstream broker.
    platform: list[PlatformAnswer] = Field(default_factory=list)
    #: Extra gateway config merged into the generated site (rules, thresholds...).
    gateway: dict[str, Any] = Field(default_factory=dict)
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids must be unique: {ids}")
        for i, step in enumerate(self.timeline):
            if step.device not in ids:
                raise ValueError(f"timeline[{i}]: unknown device {step.device!r} "
                                 f"(devices: {', '.join(ids)})")
            if step.at > self.duration:
                raise ValueError(f"timeline[{i}]: at {step.at:g}s is after the scenario's "
                                 f"duration {self.duration:g}s")
        for i, answer in enumerate(self.platform):
            if answer.at > self.duration:
                raise ValueError(f"platform[{i}]: at {answer.at:g}s is after the scenario's "
                                 f"duration {self.duration:g}s")
        return self

    @property
    def start_seconds(self) -> float | None:
        """``start_at`` as seconds since midnight."""
        if self.start_at is None:
            return None
        hours, minutes = self.start_at.split(":")
        return int(hours) * 3600.0 + int(minutes) * 60.0

    def device(self, device_id: str) -> DeviceSpec:
        return next(d for d in self.devices if d.id == device_id)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file, or a library scenario by name.

    Raises:
        ScenarioError: the file is missing or invalid (one line per problem).
    """
    file = Path(path)
    if not file.is_file():
        by_name = library().get(str(path))
        if by_name is None:
            raise ScenarioError(f"{path}: no such file or library scenario "
                                f"(library: {', '.join(sorted(library()))})")
        file = by_name
    try:
        # The config loader's YAML limits (alias bombs, nesting, size) apply to scenarios too.
        data, _ = parse_yaml(read_limited(file))
        return Scenario.model_validate({**data, "source": file})
    except YamlProblem as exc:
        raise ScenarioError(f"{file}: {exc}") from None
    except ValidationError as exc:
        lines = [f"{file}: {exc.error_count()} problem(s)"]
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  - {loc or '(top level)'}: {err['msg']}")
        raise ScenarioError("\n".join(lines)) from None
    except TypeError as exc:
        raise ScenarioError(f"{file}: expected a mapping at the top ({exc})") from None


def library() -> dict[str, Path]:
    """Bundled scenarios by name."""
    folder = Path(__file__).resolve().parent / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
