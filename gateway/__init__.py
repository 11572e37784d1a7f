"""propgw: an edge gateway for smart property facilities."""

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from importlib.abc import Loader  # at run time it imports importlib.resources

__version__ = "0.1.0"


class _NoPydanticPlugins:
    """Answers pydantic's plugin lookup with "none", without looking.

    The first model pydantic builds makes it import ``pydantic.plugin._loader``, which scans
    every installed distribution's entry points for plugins through ``importlib.metadata``: 18
    more modules (zipfile, csv, importlib's resources) and 1.5 MB of the gateway's resident
    memory, for plugins propgw never uses. This import hook provides that (private) module
    instead, with a ``get_plugins`` that returns none; it costs nothing until pydantic asks.
    tests/test_lazy_imports.py notices a pydantic that looks for plugins another way.
    """

    NAME = "pydantic.plugin._loader"

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        return ModuleSpec(fullname, cast("Loader", self)) if fullname == self.NAME else None

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # a plain module

    def exec_module(self, module: ModuleType) -> None:
        module.get_plugins = tuple  # type: ignore[attr-defined]  # called: no plugins, ()


if not any(isinstance(finder, _NoPydanticPlugins) for finder in sys.meta_path):
    sys.meta_path.insert(0, _NoPydanticPlugins())
