"""Resolves a concrete device id from a reading back to the device's config.

Most ids are literal; templated MQTT devices (``door-{door}``) produce ids at run time, which
are matched against the template once and then cached. The placeholders captured from the id
may be used in the device's ``name`` and ``location`` (``zone: "{zone}"``), so one entry for a
fire panel's zones gives every zone its own location.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.config import DeviceConfig, Location, placeholders

__all__ = ["DeviceDirectory"]


class DeviceDirectory:
    """Looks up device configs by concrete id."""

    def __init__(self, devices: Iterable[DeviceConfig]) -> None:
        self._exact: dict[str, DeviceConfig] = {}
        self._templates: list[tuple[re.Pattern[str], DeviceConfig]] = []
        for dev in devices:
            if not dev.enabled:
                continue
            if placeholders(dev.id):
                self._templates.append((_template_regex(dev.id), dev))
            else:
                self._exact[dev.id] = dev
        # "{panel}" also matches "FACP-1-zone-3": the template with more literal text wins.
        self._templates.sort(key=lambda t: -len(re.sub(r"\{[^}]*\}", "", t[1].id)))
        self._cache: dict[str, DeviceConfig | None] = {}

    def get(self, device_id: str) -> DeviceConfig | None:
        if device_id in self._exact:
            return self._exact[device_id]
        if device_id not in self._cache:
            self._cache[device_id] = self._expand(device_id)
        return self._cache[device_id]

    def captures(self, device_id: str) -> dict[str, str]:
        """What a templated device's id captured (``door-{door}`` as ``door-7``: door=7);
        empty for a literal or unknown id."""
        if device_id in self._exact:
            return {}
        for rx, _ in self._templates:
            match = rx.fullmatch(device_id)
            if match is not None:
                return match.groupdict()
        return {}

    def _expand(self, device_id: str) -> DeviceConfig | None:
        for rx, dev in self._templates:
            match = rx.fullmatch(device_id)
            if match is None:
                continue
            values = match.groupdict()
            location = {k: _fill(v, values) for k, v in dev.location.model_dump().items()}
            return dev.model_copy(update={
                "id": device_id,
                "name": _fill(dev.name, values) if dev.name else None,
                "location": Location.model_validate(location),
            })
        return None

    def configs(self) -> list[DeviceConfig]:
        """Every enabled device config (templates once, not per concrete id)."""
        return [*self._exact.values(), *(dev for _, dev in self._templates)]


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{([A-Za-z_][A-Za-z0-9_]*)\})?", template):
        pattern += re.escape(literal)
        if name:
            pattern += rf"(?P<{name}>[^/]+?)"
    return re.compile(pattern)


def _fill(text: str | None, values: dict[str, str]) -> str | None:
    if text is None or "{" not in text:
        return text
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text
