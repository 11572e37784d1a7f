"""Readings into InfluxDB as history: batched, buffered on disk through outages, never in the
alarm path. The line-protocol schema is described in :mod:`gateway.influx._lines` and
``docs/influxdb.md``.

influxdb-client (and with it aiohttp) is imported only when the stage runs, so a gateway
without an ``influxdb:`` section never loads it.
"""

from gateway.influx._buffer import Batch, DiskBuffer
from gateway.influx._errors import WriteError
from gateway.influx._lines import MEASUREMENT, DeviceTags, LineEncoder, escape_tag
from gateway.influx._writer import READY_BATCHES, InfluxState, InfluxStatus, InfluxWriter

__all__ = [
    "MEASUREMENT",
    "READY_BATCHES",
    "Batch",
    "DeviceTags",
    "DiskBuffer",
    "InfluxState",
    "InfluxStatus",
    "InfluxWriter",
    "LineEncoder",
    "WriteError",
    "escape_tag",
]
