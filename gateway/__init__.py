"""propgw: an edge gateway for smart property facilities."""

from gateway import _imports

__version__ = "0.1.0"

# Before any gateway module imports pydantic or paho: see gateway/_imports.py.
_imports.install()
