"""Readings as InfluxDB line protocol: the schema every dashboard and query relies on.

One line per reading, measurement ``reading``::

    reading,site=S,building=B,floor=F,device=D,point=P,kind=K value=21.5,quality="good" <ts>

* tags: ``site`` (``site.id``), ``building`` and ``floor`` (the device's ``location``),
  ``device``, ``point``, ``kind`` (the device's kind). A tag with no value is left out, as line
  protocol wants.
* fields: ``value`` (float; booleans as 1.0/0.0) for numbers and booleans, ``text`` for string
  values, and always ``quality`` (``good``, ``comm-loss``, ``bad``). A reading without a value
  (comm-loss) has only ``quality``, so a gap in ``value`` shows where the device was silent.
  ``value`` is always a float, never an integer: InfluxDB fixes a field's type per series on
  its first write, and a register that reads 3 and then 3.5 must not be refused.
* timestamp: the gateway's receive time (``received_ts``) in the configured precision. A point
  is identified by its series (measurement and tags) and timestamp, so writing the same batch
  twice overwrites, never duplicates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.model import Reading

__all__ = ["MEASUREMENT", "DeviceTags", "LineEncoder", "escape_tag"]

MEASUREMENT = "reading"
_SCALE = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})
_TEMPLATE_FIELD = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


@dataclass(frozen=True, slots=True)
class DeviceTags:
    """What a device adds to each of its lines besides its id."""

    building: str | None = None
    floor: str | None = None
    kind: str | None = None


def escape_tag(text: str) -> str:
    """A tag key or value for line protocol (commas, equals signs and spaces escaped)."""
    return text.translate(_TAG_ESCAPES)


def _field_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LineEncoder:
    """Turns readings into lines, with the site's and each device's tags.

    Args:
        site: The site id (tag ``site``).
        devices: Device id -> its tags. Ids that are templates (``door-{door}``, MQTT devices
            expanded from their topics) match the expanded ids.
        precision: ``s``, ``ms``, ``us`` or ``ns``.
    """

    def __init__(self, site: str, devices: Mapping[str, DeviceTags], precision: str) -> None:
        self._prefix = f"{MEASUREMENT},site={escape_tag(site)}"
        self._exact = {k: v for k, v in devices.items() if not _TEMPLATE_FIELD.search(k)}
        self._templates = [(_template_regex(k), v) for k, v in devices.items()
                           if _TEMPLATE_FIELD.search(k)]
        self._scale = _SCALE[precision]
        self._cache: dict[tuple[str, str], str] = {}

    def line(self, reading: Reading) -> str:
        """One line of line protocol (no newline)."""
        series = self._series(reading.device, reading.point)
        fields = []
        value = reading.value
        if isinstance(value, bool):
            fields.append(f"value={1.0 if value else 0.0!r}")
        elif isinstance(value, int | float):
            number = float(value)
            if math.isfinite(number):
                fields.append(f"value={number!r}")
        elif isinstance(value, str):
            fields.append(f"text={_field_string(value)}")
        fields.append(f"quality={_field_string(reading.quality.value)}")
        # A float's resolution at today's epoch is about 0.2 us: nanoseconds are microseconds
        # times 1000, not float noise.
        ts = (round(reading.received_ts * 1_000_000) * 1000 if self._scale == 1_000_000_000
              else round(reading.received_ts * self._scale))
        return f"{series} {','.join(fields)} {ts}"

    def _series(self, device: str, point: str) -> str:
        key = (device, point)
        found = self._cache.get(key)
        if found is None:
            tags = self._device_tags(device)
            parts = [self._prefix]
            if tags.building:
                parts.append(f"building={escape_tag(tags.building)}")
            if tags.floor:
                parts.append(f"floor={escape_tag(tags.floor)}")
            parts.append(f"device={escape_tag(device)}")
            parts.append(f"point={escape_tag(point)}")
            if tags.kind:
                parts.append(f"kind={escape_tag(tags.kind)}")
            found = ",".join(parts)
            if len(self._cache) < 100_000:  # bounded: templated devices may be many
                self._cache[key] = found
        return found

    def _device_tags(self, device: str) -> DeviceTags:
        tags = self._exact.get(device)
        if tags is not None:
            return tags
        for pattern, template_tags in self._templates:
            if pattern.fullmatch(device):
                return template_tags
        return DeviceTags()


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for match in _TEMPLATE_FIELD.finditer(template):
        out += [re.escape(template[pos:match.start()]), ".+?"]
        pos = match.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))
