"""Builds simulators by kind, for scenarios and ``propgw sim device``."""

from __future__ import annotations

from typing import Any

from gateway.clock import Clock
from simulators.access_control import AccessControlSim
from simulators.base import Simulator
from simulators.elevator import ElevatorSim
from simulators.fire_panel import FirePanelSim
from simulators.meters import EnergyMeterSim, WaterMeterSim
from simulators.scenario import DeviceSpec, ScenarioError

__all__ = ["MODBUS_KINDS", "MQTT_KINDS", "create"]

#: Kinds that serve Modbus (they expose a ``unit``); the others publish over MQTT.
MODBUS_KINDS = frozenset({"elevator", "energy_meter", "water_meter"})
MQTT_KINDS = frozenset({"fire_panel", "access_control"})


def create(spec: DeviceSpec, *, clock: Clock, seed: int,
           broker: tuple[str, int] | None = None, start_seconds: float | None = None) -> Simulator:
    """A simulator for ``spec``; MQTT kinds need the ``broker`` (host, port) to publish to.

    ``start_seconds`` (time of day) and the clock's speed set meter load curves, unless the
    device's own options say otherwise, so meters and the gateway agree on the hour.
    """
    options: dict[str, Any] = spec.options
    if spec.kind in ("energy_meter", "water_meter"):
        if start_seconds is not None:
            options.setdefault("time_of_day", start_seconds)
        options.setdefault("acceleration", getattr(clock, "speed", 1.0))
    try:
        if spec.kind == "elevator":
            return ElevatorSim(spec.id, unit_id=spec.unit, clock=clock, seed=seed,
                               traffic=bool(options.pop("traffic", True)), **options)
        if spec.kind == "energy_meter":
            return EnergyMeterSim(spec.id, unit_id=spec.unit, seed=seed, **options)
        if spec.kind == "water_meter":
            return WaterMeterSim(spec.id, unit_id=spec.unit, seed=seed, **options)
        if spec.kind in MQTT_KINDS:
            if broker is None:
                raise ScenarioError(f"device {spec.id}: a {spec.kind} simulator needs an MQTT "
                                    "broker")
            cls = FirePanelSim if spec.kind == "fire_panel" else AccessControlSim
            return cls(spec.id, host=broker[0], port=broker[1], clock=clock, seed=seed,
                       **options)
    except TypeError as exc:
        raise ScenarioError(f"device {spec.id}: bad option for a {spec.kind}: {exc}") from None
    raise ScenarioError(f"device {spec.id}: no simulator for kind {spec.kind!r} yet")
