"""Each package's public surface is explicit: everything in __all__ exists, nothing is listed
twice, and no public name is defined in a private module without being exported."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

#: Private modules (or names in them) whose export is a contract between sibling modules, not
#: public API: the outbox's SQLite writer records, the lifecycle's transaction and the journal's
#: (de)serialisers.
INTERNAL = {"gateway.outbox._store", "gateway.alarms._lifecycle.Txn",
            # the console's wiring: API shapes, views, sessions (the package exports the
            # service, the routes and the user store)
            "gateway.console._auth", "gateway.console._schema", "gateway.console._views",
            "gateway.console._access",
            # imported only when the InfluxDB stage runs (it loads influxdb-client)
            "gateway.influx._transport",
            "gateway.alarms._lifecycle_state.event_from_json",
            "gateway.alarms._lifecycle_state.event_to_json"}

PACKAGES = ["gateway.config", "gateway.alarms", "gateway.workorders", "gateway.upstream",
            "gateway.outbox", "gateway.console", "gateway.terminal", "gateway.accounting",
            "gateway.influx", "drivers.modbus", "drivers.mqtt"]


@pytest.mark.parametrize("name", PACKAGES)
def test_public_surface_is_explicit(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    for member in exported:
        value = getattr(package, member)
        assert not isinstance(value, types.ModuleType), f"{name}.{member} is a module"
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            continue
        if f"{name}.{info.name}" in INTERNAL:
            continue
        module = importlib.import_module(f"{name}.{info.name}")
        for member in getattr(module, "__all__", []):
            value = getattr(module, member)
            if f"{name}.{info.name}.{member}" in INTERNAL:
                continue
            if inspect.isclass(value) or inspect.isfunction(value):
                assert member in exported, \
                    f"{name}.{info.name}.{member} is public there but not in {name}.__all__"
