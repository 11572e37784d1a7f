"""Which device a message feeds: the device id template filled from topic levels and payload
fields, and the payload fields a device's ``select`` asks for.

A device ``door-{door}`` with topic ``site/door/{door}/state`` takes ``{door}`` from the topic;
a device ``panel-zone-{zone}`` with ``split_by: {zone: zone}`` takes ``{zone}`` from the
message's JSON payload, so one topic that carries every zone's events feeds one device per zone.
A device with ``select: {zone: 3}`` takes only the messages whose ``zone`` is 3, so literal
devices with names and locations of their own can share one topic.
Everything that can be prepared (the template's pieces, the field paths) is prepared once, when
the driver starts: this runs for every message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.mqtt._payload import Payload, id_text, select_key
from gateway.fieldpath import PathStep, compile_path

__all__ = ["DeviceIds", "IdError", "Selector"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A device id appears in upstream topics, URLs and logs: the alphabet and length of a
# configured one. A captured value is a piece of it.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_PIECE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_ALPHABET = "letters, digits, '_', '-', '.'; at most 64 characters"
_KNOWN_MAX = 4096


class IdError(ValueError):
    """A message names no valid device; ``from_payload`` when a ``split_by`` field is to blame."""

    def __init__(self, reason: str, *, from_payload: bool) -> None:
        super().__init__(reason)
        self.from_payload = from_payload


@dataclass(frozen=True, slots=True)
class DeviceIds:
    """A configured device id, compiled: literal, or a template with its sources.

    Attributes:
        template: The id as configured, e.g. ``panel-zone-{zone}``.
        templated: Whether the id has placeholders (its concrete ids come from messages).
        fields: ``(placeholder, path)`` pairs read from the payload (the device's
            ``split_by``), in the order configured.
    """

    template: str
    templated: bool
    fields: tuple[tuple[str, str], ...]
    _pieces: tuple[tuple[str, str | None], ...]  # (literal text, placeholder after it or None)
    _steps: tuple[tuple[PathStep, ...], ...]  # compiled paths of ``fields``
    _names: tuple[str, ...]  # the placeholders of ``_pieces``, in order
    # Ids already checked, by their captured values: most messages come from devices seen
    # before, so they skip the checks. Bounded: values come from the network.
    _known: dict[tuple[str, ...], str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def compile(cls, template: str, split_by: Mapping[str, str] | None = None) -> DeviceIds:
        """Compile a device id and its ``split_by`` (already checked by the config model).

        Raises:
            ValueError: A ``split_by`` path is malformed.
        """
        pieces: list[tuple[str, str | None]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            pieces.append((template[pos:match.start()], match.group(1)))
            pos = match.end()
        pieces.append((template[pos:], None))
        fields = tuple((split_by or {}).items())
        steps = tuple(compile_path(path) for _, path in fields)
        names = tuple(name for _, name in pieces if name is not None)
        return cls(template, len(pieces) > 1, fields, tuple(pieces), steps, names)

    def device_id(self, topic_values: Mapping[str, str], payload: Payload) -> str:
        """The concrete device id of one message.

        Args:
            topic_values: Placeholders captured from the topic; read, never changed (the
                driver shares them between the messages on one topic).
            payload: The message's payload; parsed at most once, shared with the points.

        Raises:
            IdError: A payload field is missing or unusable, or a captured value or the
                whole id is not a valid device id.
        """
        if not self.templated:
            return self.template
        values = topic_values
        if self.fields:
            filled = dict(topic_values)
            for (name, path), steps in zip(self.fields, self._steps, strict=True):
                try:
                    filled[name] = id_text(payload, steps, path)
                except ValueError as exc:
                    raise IdError(f"split_by {name}: {exc}", from_payload=True) from None
            values = filled
        try:
            key = tuple([values[name] for name in self._names])
        except KeyError as exc:
            raise IdError(f"no value for {{{exc.args[0]}}} in device id {self.template!r}",
                          from_payload=False) from None
        known = self._known.get(key)
        if known is not None:
            return known
        device_id = self._checked(key, values)
        if len(self._known) < _KNOWN_MAX:
            self._known[key] = device_id
        return device_id

    def _checked(self, key: tuple[str, ...], values: Mapping[str, str]) -> str:
        """The id from captured values met for the first time, checked."""
        for name, path in self.fields:
            text = values[name]
            if not _PIECE.fullmatch(text):
                raise IdError(f"split_by {name}: field {path!r} is {text[:40]!r}, which cannot "
                              f"be part of a device id ({_ALPHABET})", from_payload=True)
        parts: list[str] = []
        for (literal, placeholder), value in zip(self._pieces, (*key, ""), strict=True):
            parts.append(literal)
            if placeholder is not None:
                parts.append(value)
        device_id = "".join(parts)
        if not _DEVICE_ID.fullmatch(device_id):
            raise self._invalid(device_id, values)
        return device_id

    def _invalid(self, device_id: str, values: Mapping[str, str]) -> IdError:
        """The error for an invalid id, blaming the topic when one of its levels is unusable."""
        from_payload = bool(self.fields)
        if from_payload:
            split = {name for name, _ in self.fields}
            from_payload = all(_PIECE.fullmatch(v) for k, v in values.items() if k not in split)
        return IdError(f"{'payload' if from_payload else 'topic'} gives device id "
                       f"{device_id[:80]!r}, which is not a valid id ({_ALPHABET})",
                       from_payload=from_payload)


@dataclass(frozen=True, slots=True)
class Selector:
    """A device's ``select``, compiled: the payload fields a message must carry to feed it.

    Attributes:
        conditions: ``(path, value)`` pairs as configured; a whole number is its text
            (``3`` is ``"3"``), so it equals the field ``3``, ``3.0`` or ``"3"``.
    """

    conditions: tuple[tuple[str, str | bool], ...]
    _steps: tuple[tuple[PathStep, ...], ...]

    @classmethod
    def compile(cls, select: Mapping[str, str | int | bool]) -> Selector | None:
        """The selector of a device's ``select`` (checked by the config model); None without.

        Raises:
            ValueError: A path is malformed.
        """
        if not select:
            return None
        conditions = tuple((path, value if isinstance(value, bool | str) else str(value))
                           for path, value in select.items())
        return cls(conditions, tuple(compile_path(path) for path, _ in conditions))

    def selects(self, payload: Payload) -> bool:
        """Whether every field equals its value (a missing or unusable field never does)."""
        for (path, wanted), steps in zip(self.conditions, self._steps, strict=True):
            if select_key(payload, steps, path) != wanted:
                return False
        return True

    def describe(self) -> str:
        """The conditions as an operator reads them: ``zone = 3 and kind = door``."""
        return " and ".join(f"{path} = {str(value).lower() if isinstance(value, bool) else value}"
                            for path, value in self.conditions)
