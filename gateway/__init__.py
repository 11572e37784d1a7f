"""propgw: an edge gateway for smart property facilities."""

__version__ = "0.1.0"
