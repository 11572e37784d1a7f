"""Package attributes that load their module on first use (PEP 562).

``check-config`` and ``--version`` must not pay for the protocol libraries (pymodbus, aiomqtt,
aiohttp) that a package's submodules import: the package lists where each public name lives and
imports that submodule only when the name is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(namespace: dict[str, Any], where: Mapping[str, str]
                    ) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the package whose ``globals()`` is ``namespace``: the first
    use of ``name`` imports ``where[name]`` and keeps the value in the package."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
