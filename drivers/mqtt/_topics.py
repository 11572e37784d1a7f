"""Point topics with ``{placeholders}``: the subscription filter, matching, device-id expansion.

A point topic such as ``site/door/{door}/state`` is subscribed as ``site/door/+/state``; a
message on ``site/door/7/state`` then captures ``{"door": "7"}``, which turns the device id
template ``door-{door}`` into ``door-7``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TopicPattern", "expand_device_id", "is_template"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A captured level becomes part of a device id, which appears in upstream topics, URLs and
# logs: the same alphabet and length as a configured device id.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

_PLUS = "+"
_HASH = "#"


@dataclass(frozen=True, slots=True)
class _Level:
    kind: str  # "literal", "placeholder", "+" or "#"
    text: str  # the literal text, or the placeholder's name


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A compiled point topic.

    Attributes:
        template: The topic as configured, e.g. ``site/door/{door}/state``.
        filter: The MQTT subscription filter, e.g. ``site/door/+/state``.
        names: Placeholder names in the order they appear.
    """

    template: str
    filter: str
    names: tuple[str, ...]
    _levels: tuple[_Level, ...]

    @classmethod
    def compile(cls, template: str) -> TopicPattern:
        """Compile a topic template (already syntax-checked by the config model).

        Raises:
            ValueError: A level mixes a placeholder or wildcard with other text.
        """
        levels: list[_Level] = []
        for i, text in enumerate(template.split("/")):
            match = _PLACEHOLDER.fullmatch(text)
            if match is not None:
                levels.append(_Level("placeholder", match.group(1)))
            elif text in (_PLUS, _HASH):
                if text == _HASH and i != template.count("/"):
                    raise ValueError(f"'#' must be the last level: {template!r}")
                levels.append(_Level(text, text))
            elif "{" in text or "}" in text or _PLUS in text or _HASH in text:
                raise ValueError(f"a placeholder or wildcard must be a whole topic level: "
                                 f"{template!r}")
            else:
                levels.append(_Level("literal", text))
        names = tuple(lv.text for lv in levels if lv.kind == "placeholder")
        if len(set(names)) != len(names):
            raise ValueError(f"a placeholder appears twice in {template!r}")
        filter_ = "/".join(_PLUS if lv.kind == "placeholder" else lv.text for lv in levels)
        return cls(template, filter_, names, tuple(levels))

    def match(self, topic: str) -> dict[str, str] | None:
        """Captured placeholder values if ``topic`` matches, else ``None``.

        Matching follows the MQTT rules for ``+`` and ``#`` (``a/#`` also matches ``a``), and
        wildcards at the first level do not match topics starting with ``$`` (MQTT 3.1.1
        §4.7.2). A placeholder must capture a non-empty level.
        """
        parts = topic.split("/")
        levels = self._levels
        if parts[0].startswith("$") and levels and levels[0].kind != "literal":
            return None
        captured: dict[str, str] = {}
        for i, level in enumerate(levels):
            if level.kind == _HASH:
                return captured
            if i >= len(parts):
                return None
            part = parts[i]
            if level.kind == "literal":
                if part != level.text:
                    return None
            elif level.kind == "placeholder":
                if not part:
                    return None
                captured[level.text] = part
        return captured if len(parts) == len(levels) else None


def expand_device_id(template: str, values: Mapping[str, str]) -> str:
    """Fill a device id template such as ``door-{door}`` with captured topic levels.

    Raises:
        ValueError: A placeholder has no value, or the result is not a valid device id
            (letters, digits, ``_``, ``-``, ``.``; at most 64 characters).
    """
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"no value for {{{name}}} in device id {template!r}")
        return values[name]

    device_id = _PLACEHOLDER.sub(fill, template)
    if not _DEVICE_ID.fullmatch(device_id):
        raise ValueError(f"topic gives device id {device_id!r}, which is not a valid id "
                         f"(letters, digits, '_', '-', '.'; at most 64 characters)")
    return device_id


def is_template(device_id: str) -> bool:
    """Whether a configured device id has placeholders (its concrete ids come from topics)."""
    return _PLACEHOLDER.search(device_id) is not None
