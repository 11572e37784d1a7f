"""Turn an MQTT payload into one point's value.

The steps, in order:

1. **Extract.** With ``path``, the payload is JSON and the field path (``status.door``,
   ``zones[2].state``, ``a.b[0].c``; ``[-1]`` is the last element) selects one scalar. Without
   it, the payload is plain text: a number, ``true``/``false`` (any case), a JSON scalar
   (``"quoted text"``) or any other text.
2. **Map, received value.** If ``map`` has the received value's text as a key, the mapped value
   is the result. This is how ``{OPEN: true}`` works even for ``type: bool``.
3. **Type.** ``auto`` keeps what was received; ``number`` and ``int`` accept numbers and numeric
   text; ``bool`` accepts true/false, 1/0 and on/off; ``string`` turns anything into text.
4. **Scale.** Numbers become ``value * scale + offset``.
5. **Map, decoded value.** If ``map`` has the decoded value's text as a key, the mapped value is
   the result; unmapped values pass through.

Map keys are compared as text: a JSON ``true`` is ``"true"``, a number ``1.0`` is ``"1"``.
A number beyond the range of a float (``1e400``, an integer of 310 digits) is never a value: it
could not be scaled, compared or sent upstream. Anything that does not fit raises
:class:`~gateway.errors.DecodeError` with a short, one-line reason; nothing else escapes, whatever
the payload.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from gateway.config import MqttPoint
from gateway.errors import DecodeError
from gateway.fieldpath import PathStep, compile_path

__all__ = ["Decoded", "Payload", "PointDecoder", "compile_path", "id_text"]

Scalar = bool | int | float | str

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = frozenset({"true", "1", "on"})
_FALSE = frozenset({"false", "0", "off"})
# Longest integer text that can be within float range (1.8e308 has 309 digits).
_MAX_INT_CHARS = 310
# Shortest integer text beyond float range (1.8e308 has 309 digits).
_MIN_HUGE_INT_CHARS = 309
# Epoch values above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 1e11


@functools.cache
def _orjson() -> Callable[[bytes | bytearray | str], Any] | None:
    """orjson's decoder: C, about 9x faster than json on a telemetry message. None where it
    has no wheel (see pyproject.toml): json then decodes alone.

    Imported with the first JSON payload, not before: importing it takes about 2.7 MB of
    memory (its caches), which a gateway that has not received JSON yet need not hold.
    """
    try:
        from orjson import loads  # noqa: PLC0415 - on first use, see above
    except ImportError:  # pragma: no cover - a platform without a wheel
        return None
    return loads

#: Per point type: the JSON value types it keeps unchanged (see ``_coerce``).
_KEPT_AS_IS: dict[str, frozenset[type]] = {
    "auto": frozenset({bool, int, float, str}), "number": frozenset({int, float}),
    "int": frozenset({int}), "bool": frozenset({bool}), "string": frozenset({str}),
}


class _Invalid(Exception):
    """A payload does not fit; the message is the short reason shown to operators."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A point's value from one message.

    Attributes:
        value: The typed, scaled and mapped value.
        source_ts: The device's own timestamp (epoch seconds), if ``timestamp_path`` is set.
    """

    value: Scalar
    source_ts: float | None = None


class Payload:
    """One message's payload; text and JSON are decoded once and shared by all its points."""

    __slots__ = ("_document", "_error", "_parsed", "_stamps", "_text", "raw")

    def __init__(self, raw: bytes | bytearray | str) -> None:
        self.raw = raw
        self._text: str | None = None
        self._parsed = False
        self._document: Any = None
        self._error: str | None = None  # why the payload is not JSON, once found
        #: Timestamps already decoded, by (``timestamp_path``, time zone): the points of one
        #: message usually share one, parsed once for all of them.
        self._stamps: dict[tuple[str, tzinfo], float] | None = None

    def text(self) -> str:
        if self._text is None:
            if isinstance(self.raw, str):
                self._text = self.raw
            else:
                try:
                    self._text = bytes(self.raw).decode("utf-8")
                except UnicodeDecodeError:
                    raise _Invalid("payload is not UTF-8 text") from None
        return self._text

    def document(self) -> Any:
        """The payload parsed as JSON (NaN and Infinity are not JSON and are refused)."""
        if not self._parsed:
            if self._error is not None:
                raise _Invalid(self._error)  # every point and selector of it asks again
            try:
                self._document = self._parse()
            except _Invalid as exc:
                self._error = str(exc)
                raise
            self._parsed = True
        return self._document

    def _parse(self) -> Any:
        fast = _orjson()
        if fast is not None:
            # orjson decodes what it accepts as json does, but for integers beyond 64 bits
            # (a float for it) and for what it refuses (NaN, 1e400, over 1,024 levels,
            # bad UTF-8): those go to json below, whose result and error text are the rule.
            try:
                document = fast(self.raw)
            except ValueError:
                pass
            else:
                if not _has_huge_float(document):
                    return document
        text = self.text()
        try:
            # An integer beyond float range has at least 309 digits: a shorter payload
            # cannot hold one, and skips the per-integer hook (most messages do).
            return (json.loads(text, parse_constant=_refuse_constant)
                    if len(text) < _MIN_HUGE_INT_CHARS else
                    json.loads(text, parse_constant=_refuse_constant, parse_int=_json_int))
        except json.JSONDecodeError as exc:
            raise _Invalid(f"payload is not JSON ({exc.msg} at char {exc.pos})") from None
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        except RecursionError:
            raise _Invalid("payload JSON is nested too deeply") from None


class PointDecoder:
    """Decodes payloads for one :class:`~gateway.config.MqttPoint`.

    Args:
        point: The point's config.
        tz: Time zone for ISO-8601 timestamps without an offset (the site's time zone).

    Raises:
        ValueError: ``path`` or ``timestamp_path`` is malformed, or ``timestamp_path`` is set
            without ``path`` (a plain payload has no fields).
    """

    __slots__ = ("_as_is", "_key", "_map", "_path", "_scaled", "_ts_key", "_ts_path",
                 "_type", "_tz", "name", "point")

    def __init__(self, point: MqttPoint, *, tz: tzinfo = UTC) -> None:
        self.point = point
        #: The point's name (an attribute: read for every reading).
        self.name = point.name
        self._path = compile_path(point.path) if point.path is not None else None
        if point.timestamp_path is not None and point.path is None:
            raise ValueError("timestamp_path needs a JSON payload: set 'path' as well")
        self._ts_path = (compile_path(point.timestamp_path)
                         if point.timestamp_path is not None else None)
        self._tz = tz
        self._map = point.map or {}
        self._scaled = point.scale != 1.0 or point.offset != 0.0
        self._type = point.type
        #: A path of one field (``temp``, the usual case) is looked up without walking.
        self._key = (self._path[0] if self._path is not None and len(self._path) == 1
                     and isinstance(self._path[0], str) else None)
        #: With one field, no map and no scale: the JSON types the point's type keeps as
        #: they are (a finite float), so the hot path skips the general steps for them.
        self._as_is: frozenset[type] = (
            _KEPT_AS_IS[point.type] if self._key is not None and not self._map
            and not self._scaled else frozenset())
        #: The points of one message sharing a timestamp parse it once (see Payload).
        self._ts_key = (point.timestamp_path or "", tz)

    def decode(self, payload: Payload, *, device: str) -> Decoded:
        """The point's value in ``payload``.

        Args:
            payload: The message payload (shared by every point on the topic).
            device: Concrete device id, carried by the error.

        Raises:
            DecodeError: The payload is malformed or the value does not fit the point's type.
        """
        value, source_ts = self.decode_value(payload, device=device)
        return Decoded(value, source_ts)

    def decode_value(self, payload: Payload, *, device: str) -> tuple[Scalar, float | None]:
        """:meth:`decode` as a plain ``(value, source_ts)`` pair, for the hot path (no object
        per reading); the timestamp is decoded once per payload for every point sharing it.

        Raises:
            DecodeError: As :meth:`decode`.
        """
        try:
            value: Scalar | None = None
            if self._as_is:  # the usual case, without the general steps
                document = payload.document()
                if type(document) is dict and self._key in document:
                    raw = document[self._key]
                    kind = type(raw)
                    if kind in self._as_is and (kind is not float or math.isfinite(raw)):
                        value = raw
            if value is None:
                value = self._value(payload)
            if self._ts_path is None:
                return value, None
            key = self._ts_key
            stamps = payload._stamps
            if stamps is None:
                stamps = payload._stamps = {}
            source_ts = stamps.get(key)
            if source_ts is None:
                source_ts = stamps[key] = self._timestamp(
                    _walk(payload.document(), self._ts_path, key[0]))
        except _Invalid as exc:
            raise DecodeError(str(exc), device=device) from None
        return value, source_ts

    def _value(self, payload: Payload) -> Scalar:
        if self._path is not None:
            document = payload.document()
            key = self._key
            if key is not None and type(document) is dict and key in document:
                raw = document[key]
            else:
                raw = _walk(document, self._path, self.point.path or "")
            raw = _scalar(raw, self.point.path or "")
        elif self._type == "string":
            raw = _plain(payload.text(), keep_text=True)
        else:
            raw = _plain(payload.text(), keep_text=False)
        if self._map:
            mapped = self._map.get(_key_text(raw))
            if mapped is not None:
                return mapped
        value = raw if self._type == "auto" else _coerce(raw, self._type)
        if self._scaled and isinstance(value, int | float) and not isinstance(value, bool):
            value = self._scale(value)
        if self._map:
            mapped = self._map.get(_key_text(value))
            if mapped is not None:
                return mapped
        return value

    def _scale(self, value: int | float) -> int | float:
        scale, offset = self.point.scale, self.point.offset
        result = value * scale + offset
        if not math.isfinite(result):
            raise _Invalid(f"{_short(value)} * {scale:g} + {offset:g} is not a finite number")
        if isinstance(value, int) and scale.is_integer() and offset.is_integer():
            return int(result)
        return result

    def _timestamp(self, raw: Any) -> float:
        where = self.point.timestamp_path
        if isinstance(raw, str):
            text = raw.strip()
            if _NUMBER.fullmatch(text):
                raw = float(text)
            else:
                try:
                    stamp = datetime.fromisoformat(text)
                except ValueError:
                    raise _Invalid(f"timestamp {_short(raw)} at {where!r} is not epoch "
                                   f"seconds/ms or ISO 8601") from None
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=self._tz)
                return stamp.timestamp()
        if isinstance(raw, bool) or not isinstance(raw, int | float) or \
                not math.isfinite(raw):
            raise _Invalid(f"timestamp {_short(raw)} at {where!r} is not epoch seconds/ms or "
                           f"ISO 8601")
        return raw / 1000.0 if abs(raw) > _MS_THRESHOLD else float(raw)


def _json_int(text: str) -> int | float:
    """A JSON integer; beyond float range it is infinite, and refused where it is used.

    Python's own conversion raises ValueError beyond 4,300 digits, which would make the whole
    payload unreadable for every point because of one field."""
    value = _parse_int(text)
    return value if value is not None else (-math.inf if text.startswith("-") else math.inf)


def _parse_int(text: str) -> int | None:
    """``text`` (digits with an optional sign) as an int, or None beyond float range: such a
    number cannot be scaled, compared with a threshold or sent upstream as JSON."""
    if len(text) > _MAX_INT_CHARS:
        return None
    value = int(text)
    return value if abs(value) <= sys.float_info.max else None


#: Floats at least this large may be integers beyond 64 bits that orjson made floats.
_HUGE = 2.0 ** 63


def _has_huge_float(node: Any) -> bool:
    """Whether a float of magnitude 2**63 or more (or NaN) is anywhere in ``node``."""
    kind = type(node)
    if kind is dict:
        values: Any = node.values()
    elif kind is list:
        values = node
    else:
        return kind is float and not -_HUGE < node < _HUGE
    for value in values:
        kind = type(value)
        if kind is float:
            if not -_HUGE < value < _HUGE:
                return True
        elif (kind is dict or kind is list) and _has_huge_float(value):
            return True
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"payload has {name}, which is not a JSON number")


def _walk(document: Any, steps: tuple[PathStep, ...], path: str) -> Any:
    node = document
    for i, step in enumerate(steps):
        if isinstance(step, int):
            if not isinstance(node, list):
                raise _Invalid(f"{_where(steps, i)} is {_kind(node)}, not a list")
            if not -len(node) <= step < len(node):
                raise _Invalid(f"{_where(steps, i + 1)} is out of range (length {len(node)})")
            node = node[step]
        else:
            if not isinstance(node, dict):
                raise _Invalid(f"{_where(steps, i)} is {_kind(node)}, not an object")
            if step not in node:
                raise _Invalid(f"field {path!r} is missing" if i == len(steps) - 1 else
                               f"field {_where(steps, i + 1)!r} is missing")
            node = node[step]
    return node


def _where(steps: tuple[PathStep, ...], n: int) -> str:
    """The first ``n`` steps as path text; the payload itself for 0."""
    text = ""
    for step in steps[:n]:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "the payload"


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean"}.get(
        type(node), "a number")


def _scalar(raw: Any, path: str) -> Scalar:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise _Invalid(f"field {path!r} is a number beyond the range of a float")
    if isinstance(raw, bool | int | float | str):
        return raw
    raise _Invalid(f"field {path!r} is {_kind(raw)}, not a single value")


def _plain(text: str, *, keep_text: bool) -> Scalar:
    stripped = text.strip()
    if not stripped:
        raise _Invalid("payload is empty")
    if stripped[0] in "{[\"":
        try:
            parsed = json.loads(stripped, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            parsed = stripped  # not JSON after all: plain text that starts with a bracket
        if isinstance(parsed, str):
            return parsed
        if not keep_text:
            raise _Invalid(f"payload is JSON {_kind(parsed)}: set 'path' to pick a field")
        return stripped
    if keep_text:
        return stripped
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        raise _Invalid("payload is null")
    number = _parse_number(stripped)
    return stripped if number is None else number


def _parse_number(text: str) -> int | float | None:
    if _INT.fullmatch(text):
        return _parse_int(text)
    if _NUMBER.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else None
    return None


def _coerce(raw: Scalar, type_: str) -> Scalar:
    if type_ == "auto":
        return raw
    if type_ == "string":
        return _key_text(raw) if not isinstance(raw, float) else repr(raw)
    if type_ == "bool":
        if isinstance(raw, bool):
            return raw
        text = _key_text(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Invalid(f"expected true/false, 1/0 or on/off, got {_short(raw)} (a value map "
                       f"can translate it)")
    number: int | float | None
    if isinstance(raw, bool):
        number = None
    elif isinstance(raw, str):
        number = _parse_number(raw.strip())
    else:
        number = raw
    if number is None:
        raise _Invalid(f"expected {'an integer' if type_ == 'int' else 'a number'}, "
                       f"got {_short(raw)}")
    if type_ == "int" and isinstance(number, float):
        if not number.is_integer():
            raise _Invalid(f"expected an integer, got {_short(raw)}")
        return int(number)
    return number


def _key_text(value: Scalar) -> str:
    """Text of a value as the config's map keys are written (``true``, ``1`` for ``1.0``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _short(value: Any) -> str:
    """``value`` for a reason shown to operators: at most 40 characters, one printable line."""
    if isinstance(value, str):  # repr escapes line breaks and control characters
        text = repr(value) if len(value) <= 40 else repr(value[:37]) + "..."
    else:
        text = json.dumps(value, ensure_ascii=False)
        if not text.isprintable():
            text = json.dumps(value)  # \u escapes for U+2028 and the like
    return text if len(text) <= 40 else text[:37] + "..."


def id_text(payload: Payload, steps: tuple[PathStep, ...], path: str) -> str:
    """The text of the field at ``path`` of a JSON payload, to become part of a device id.

    Text stays as it is; a whole number is its digits (``3`` and ``3.0`` are ``"3"``).

    Raises:
        ValueError: The payload is not JSON, the field is missing, or it is not text or a whole
            number (a boolean, a fraction, null, an object or a list names no device).
    """
    try:
        raw = _walk(payload.document(), steps, path)
    except _Invalid as exc:
        raise ValueError(str(exc)) from None
    text = _as_id_text(raw)
    if text is None:
        what = _short(raw) if isinstance(raw, bool | float) else _kind(raw)
        raise ValueError(f"field {path!r} is {what}, not text or a whole number")
    return text


def select_key(payload: Payload, steps: tuple[PathStep, ...], path: str) -> str | bool | None:
    """The field at ``path`` as a device's ``select`` compares it: text and whole numbers as
    :func:`id_text` reads them, a boolean as itself; None when it is missing or anything else
    (or the payload is not JSON)."""
    try:
        raw = _walk(payload.document(), steps, path)
    except _Invalid:
        return None
    return raw if isinstance(raw, bool) else _as_id_text(raw)


def _as_id_text(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return None
