"""Two import-time costs a gateway never uses, avoided before anything else is imported.

Each trims what every ``propgw run`` keeps resident (measured on the bench rig's site with
``bench/idle.py``; tests/test_lazy_imports.py holds both):

* pydantic's plugin lookup: the first model pydantic builds makes it import
  ``pydantic.plugin._loader``, which scans every installed distribution's entry points through
  ``importlib.metadata`` (18 modules, 1.5 MB) for plugins propgw does not use. An import hook
  provides that (private) module with a ``get_plugins`` that returns none.
* ``urllib.request``: paho imports it (and with it ``http.client`` and the email parser: 22
  modules, 1.3 MB) only to read proxy settings, which it does only when PySocks is installed.
  Without PySocks the module is made lazy: its code runs on the first use of one of its names,
  which for paho is never. With PySocks it loads as usual, since paho's connect threads
  could then be the first to use it at the same time.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader  # at run time it imports importlib.resources

__all__ = ["install"]


def install() -> None:
    """Install both (once; a no-op when what they avoid is loaded already)."""
    if not any(isinstance(finder, _NoPydanticPlugins) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPydanticPlugins())
    if importlib.util.find_spec("socks") is None:
        _lazy("urllib.request")


class _NoPydanticPlugins:
    """Answers pydantic's plugin lookup with "none", without looking; it costs nothing until
    pydantic asks."""

    NAME = "pydantic.plugin._loader"

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        return ModuleSpec(fullname, cast("Loader", self)) if fullname == self.NAME else None

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # a plain module

    def exec_module(self, module: ModuleType) -> None:
        module.get_plugins = tuple  # type: ignore[attr-defined]  # called: no plugins, ()


def _lazy(name: str) -> None:
    """Put ``name`` in ``sys.modules`` as a module that runs its code when a name it does not
    have yet is first read from it."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)  # __spec__, __name__ ... but no code run
    module.__class__ = _LoadsOnUse
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        # What the import system does for a submodule it loads: `import urllib.request` binds
        # `urllib` and reads `.request` from it.
        setattr(sys.modules[parent], child, module)


class _LoadsOnUse(ModuleType):
    """A module whose code has not run: the first read of a missing name runs it (once, under
    a lock), then the module is a plain one. Unlike importlib's LazyLoader, reading what the
    import system reads (``__spec__``, ``__name__``) does not load it, so a second ``import``
    statement does not either (Python 3.11)."""

    _lock = threading.Lock()

    def __getattr__(self, attr: str) -> Any:
        with _LoadsOnUse._lock:
            if type(self) is _LoadsOnUse:
                loader = self.__spec__.loader if self.__spec__ is not None else None
                if loader is None:
                    raise ImportError(f"{self.__name__} cannot be loaded", name=self.__name__)
                loader.exec_module(self)
                self.__class__ = ModuleType  # type: ignore[assignment]  # a plain module again
        return ModuleType.__getattribute__(self, attr)
