"""The simulator kinds, in a module of their own: ``propgw``'s argument parser offers them as
choices on every start, without importing the simulators (or the config models they use)."""

__all__ = ["KINDS"]

KINDS = ("elevator", "fire_panel", "access_control", "energy_meter", "water_meter")
