"""Devices and their points: Modbus TCP/RTU and MQTT, with locations and profiles merged in."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from gateway.config._derived import DerivedPoint
from gateway.config._offline import OfflineSetting
from gateway.config._types import Duration, Identifier, Value, ValueMap
from gateway.config._types import StrictModel as _Model
from gateway.fieldpath import compile_path

__all__ = [
    "DeviceConfig",
    "Location",
    "ModbusFunction",
    "ModbusPoint",
    "ModbusRtuDevice",
    "ModbusTcpDevice",
    "ModbusType",
    "MqttDevice",
    "MqttPoint",
    "placeholders",
    "templated_text_warnings",
]

# --------------------------------------------------------------------------- devices and points

#: A value ``select`` compares a payload field with (a whole float becomes an int first).
SelectValue = str | int | bool


class Location(_Model):
    """Where a device is; copied into every alarm and work order it causes."""

    building: str | None = None
    floor: str | None = None
    zone: str | None = None
    room: str | None = None

    @field_validator("building", "floor", "zone", "room", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        # "floor: 3" in YAML is an int; a location is always text.
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else value


ModbusType = Literal["bool", "bit", "int16", "uint16", "int32", "uint32", "float32",
                     "int64", "uint64", "float64"]
ModbusFunction = Literal["coil", "discrete_input", "holding", "input"]
_FUNCTION_CODES: dict[int, ModbusFunction] = {
    1: "coil", 2: "discrete_input", 3: "holding", 4: "input",
}


class _PointBase(_Model):
    name: Identifier
    unit: str | None = Field(default=None, description="Engineering unit, e.g. V, kWh, ℃.")
    description: str | None = None
    scale: float = Field(default=1.0, description="value = raw * scale + offset")
    offset: float = 0.0
    map: ValueMap | None = Field(
        default=None,
        description="Value map applied after decoding, e.g. {0: stopped, 1: running} or "
                    "{OPEN: true}. Keys are compared as text; unmapped values pass through.")


class ModbusPoint(_PointBase):
    """A register (or coil) of a Modbus device."""

    address: int = Field(ge=0, le=65535,
                         description="0-based protocol address (vendor lists that start at "
                                     "1 or 40001 need converting: see docs).")
    function: ModbusFunction = Field(
        default="holding",
        description="Register table: coil (FC1), discrete_input (FC2), holding (FC3), "
                    "input (FC4). The numbers 1-4 are accepted too.")
    type: ModbusType = "uint16"
    bit: int | None = Field(default=None, ge=0, le=15,
                            description="For type 'bit': bit index in the register, 0 = LSB.")
    byte_order: Literal["big", "little"] = Field(
        default="big", description="Byte order inside each 16-bit register.")
    word_order: Literal["big", "little"] = Field(
        default="big", description="Register order of 32/64-bit values: big = high word first.")
    address_verified: bool = Field(
        default=False,
        description="The address is the device's real 0-based address even though it looks "
                    "like a Modicon reference (40001...); check-config stops warning.")

    @field_validator("function", mode="before")
    @classmethod
    def _function_code(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in _FUNCTION_CODES:
                raise ValueError(f"function code must be 1, 2, 3 or 4, got {value}")
            return _FUNCTION_CODES[value]
        return value

    @model_validator(mode="after")
    def _type_fits_table(self) -> ModbusPoint:
        bit_table = self.function in ("coil", "discrete_input")
        if bit_table and self.type != "bool":
            raise ValueError(f"a {self.function} point holds one bit: type must be 'bool', "
                             f"got {self.type!r}")
        if not bit_table and self.type == "bool":
            raise ValueError("type 'bool' is for coil/discrete_input; for one bit of a "
                             "register use type 'bit' with 'bit: N'")
        if (self.type == "bit") != (self.bit is not None):
            raise ValueError("type 'bit' needs 'bit: 0..15', and 'bit' is only for type 'bit'")
        end = self.address + self.width - 1
        if end > 65535:
            raise ValueError(f"{self.type} at address {self.address} runs past 65535")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits, for bit tables) the point occupies."""
        return {"int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4,
                "float64": 4}.get(self.type, 1)


class MqttPoint(_PointBase):
    """A value carried by MQTT messages."""

    topic: str = Field(min_length=1, description="Topic; may use {placeholders} and '+'/'#'.")
    path: str | None = Field(
        default=None,
        description="Field in a JSON payload, e.g. 'status.door' or 'zones[2].state'. "
                    "Omit for a plain payload (number, text, true/false).")
    type: Literal["auto", "number", "int", "bool", "string"] = "auto"
    timestamp_path: str | None = Field(
        default=None,
        description="Field holding the device's own timestamp (epoch s/ms or ISO 8601).")
    expire_after: Duration | None = Field(
        default=None, gt=0,
        description="An event point: this long after its last message the point reads "
                    "expire_to (until the next message).")
    expire_to: Value | None = Field(
        default=None,
        description="The value an expired point reads, e.g. none or false (with expire_after).")

    @model_validator(mode="after")
    def _expiry_pair(self) -> MqttPoint:
        if (self.expire_after is None) != (self.expire_to is None):
            raise ValueError("expire_after and expire_to go together: after expire_after "
                             "without a message the point reads expire_to")
        return self

    @field_validator("topic")
    @classmethod
    def _topic_syntax(cls, value: str) -> str:
        _check_topic(value)
        return value


class _DeviceBase(_Model):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9{][A-Za-z0-9_.\-{}]*$",
                    description="Device id; MQTT devices may use {placeholders} from topics.")
    name: str | None = Field(default=None, description="Human name, e.g. 1号楼1号梯.")
    kind: str = Field(default="generic", pattern=r"^[a-z][a-z0-9_]*$",
                      description="elevator, fire_panel, access_door, energy_meter, "
                                  "water_meter, ... Rules select devices by kind.")
    location: Location = Field(default_factory=Location)
    profile: str | None = Field(default=None,
                                description="Device profile whose points are merged in.")
    enabled: bool = True
    derived: list[DerivedPoint] = Field(
        default_factory=list, max_length=200,
        description="Points computed from this device's other points (bits, maps, "
                    "expressions); rules, messages and the console see them like any point.")

    def point_names(self) -> set[str]:
        """Every point a rule may read: the points read from the device and the derived ones."""
        points: list[Any] = getattr(self, "points", [])
        return {p.name for p in points} | {d.name for d in self.derived}


class _ModbusDeviceBase(_DeviceBase):
    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id.")
    poll_interval: Duration = Field(default=1.0, ge=0.05, le=3600)
    timeout: Duration = Field(default=1.0, gt=0, le=10,
                              description="Deadline for one request.")
    retries: int = Field(default=0, ge=0, le=3,
                         description="Immediate retries of a failed request in one cycle.")
    max_gap: int = Field(default=8, ge=0, le=100,
                         description="Unused registers a single read may span to coalesce "
                                     "neighbouring points.")
    max_backoff: Duration = Field(
        default=30.0, ge=1,
        description="A silent device is polled at a backed-off rate up to this period.")
    points: list[ModbusPoint] = Field(default_factory=list)
    address_verified: bool = Field(
        default=False, description="As a point's address_verified, for every point.")

    @model_validator(mode="after")
    def _unique_point_names(self) -> _ModbusDeviceBase:
        _check_unique_points(self.points)
        return self


class ModbusTcpDevice(_ModbusDeviceBase):
    driver: Literal["modbus-tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)


class ModbusRtuDevice(_ModbusDeviceBase):
    driver: Literal["modbus-rtu"]
    port: str = Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0 or "
                                                "/dev/ttyAMA0.")
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    inter_frame_delay: Duration | None = Field(
        default=None, le=1,
        description="Silence between frames; default t3.5 from the baud rate "
                    "(1.75 ms above 19200 bps).")

    @property
    def serial_settings(self) -> tuple[int, str, int, int]:
        return (self.baudrate, self.parity, self.bytesize, self.stopbits)


class MqttDevice(_DeviceBase):
    driver: Literal["mqtt"]
    broker: str | None = Field(default=None,
                               description="Broker id from 'brokers'; may be omitted when "
                                           "there is exactly one device broker.")
    qos: Literal[0, 1, 2] = 1
    stale_after: Duration | None = Field(
        default=None, gt=0,
        description="No message for this long marks the device's points comm-loss.")
    topic_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Fill topic placeholders for this one device, e.g. {door: D1} turns a "
                    "profile's acs/{door}/state into acs/D1/state.")
    split_by: dict[str, str] = Field(
        default_factory=dict, max_length=8,
        description="Take device id placeholders from each message's JSON payload: "
                    "{zone: zone} turns a panel's one topic into devices panel-zone-1, "
                    "panel-zone-2, ... (id panel-zone-{zone}); a message feeds only the "
                    "device its field names.")
    select: dict[str, SelectValue] = Field(
        default_factory=dict, max_length=8,
        description="Only messages whose JSON payload fields equal these values feed the "
                    "device, e.g. {zone: 3}: devices that share one topic (a panel's zones) "
                    "each take their own (3, 3.0 and \"3\" are equal; true only equals true).")
    max_devices: int = Field(
        default=1000, ge=1, le=100_000,
        description="A templated id (placeholders from topic levels or split_by) makes at "
                    "most this many devices; messages naming further ones feed nothing and "
                    "are counted (too_many_devices): a faulty sender cannot grow the "
                    "gateway's memory without bound.")
    points: list[MqttPoint] = Field(default_factory=list)
    offline: OfflineSetting | None = Field(
        default=None,
        description="What silence means for rules that call a silent device offline: "
                    "'never' (it reports only on change), or {heartbeat: [points], after}.")

    @model_validator(mode="before")
    @classmethod
    def _fill_topic_vars(cls, data: Any) -> Any:
        # Before validation, so a profile's templated topics become this device's own.
        if not isinstance(data, dict) or not isinstance(data.get("topic_vars"), dict):
            return data
        fills = {str(k): str(v) for k, v in data["topic_vars"].items()}
        points = data.get("points")
        if isinstance(points, list):
            data = {**data, "points": [
                {**p, "topic": _fill(str(p["topic"]), fills)}
                if isinstance(p, dict) and "topic" in p else p for p in points]}
        return data

    @field_validator("split_by")
    @classmethod
    def _split_by_syntax(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not _PLACEHOLDER.fullmatch("{" + name + "}"):
                raise ValueError(f"{name!r} is not a placeholder name (letters, "
                                 f"digits and '_', not starting with a digit), as in "
                                 f"'split_by: {{zone: zone}}' for the id 'panel-zone-{{zone}}'")
            _check_payload_field(name, path)
        return value

    @field_validator("select", mode="before")
    @classmethod
    def _select_syntax(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic explains what a mapping is
        checked: dict[Any, Any] = {}
        for path, raw in value.items():
            _check_payload_field(str(path), str(path))
            # 3.0 in YAML is the whole number 3.
            wanted = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
            if not isinstance(wanted, str | int | bool):
                what = ("null" if wanted is None else "a list" if isinstance(wanted, list)
                        else "a mapping" if isinstance(wanted, dict) else repr(wanted))
                # pydantic reports a ValueError with its key; a TypeError would escape.
                raise ValueError(  # noqa: TRY004
                    f"{path}: the value is {what}, but a field can only be compared with "
                    f"text, a whole number or true/false, e.g. 'select: {{zone: 3}}'")
            checked[path] = wanted
        return checked

    @model_validator(mode="after")
    def _placeholders_consistent(self) -> MqttDevice:
        _check_unique_points(self.points)
        needed = placeholders(self.id)
        split = set(self.split_by)
        unused = sorted(split - needed)
        if unused:
            raise ValueError(
                f"split_by.{unused[0]}: the device id {self.id!r} has no {{{unused[0]}}}; a "
                f"field taken from the payload must name the device, e.g. id "
                f"'{self.id}-{{{unused[0]}}}'")
        for point in self.points:
            from_topic = placeholders(point.topic)
            twice = sorted(from_topic & split)
            if twice:
                raise ValueError(
                    f"point {point.name!r}: {{{twice[0]}}} is taken from the topic "
                    f"{point.topic!r} and from the payload (split_by.{twice[0]}): use one")
            missing = needed - split - from_topic
            if missing:
                names = ", ".join("{" + m + "}" for m in sorted(missing))
                raise ValueError(
                    f"point {point.name!r}: topic {point.topic!r} lacks placeholder(s) "
                    f"{names} used in the device id (a topic level such as "
                    f"'site/{{{min(missing)}}}/state', or a payload field with "
                    f"'split_by: {{{min(missing)}: FIELD}}')")
            if (split or self.select) and point.path is None:
                key, reads = (("split_by", "reads the device from")
                              if split else ("select", "chooses messages by"))
                raise ValueError(
                    f"point {point.name!r} has no 'path', but {key} {reads} "
                    f"the message's JSON payload: give the field the point reads, e.g. "
                    f"'path: event'")
        _check_offline(self)
        return self


DeviceConfig = Annotated[ModbusTcpDevice | ModbusRtuDevice | MqttDevice,
                         Field(discriminator="driver")]


# --------------------------------------------------------------------------- helpers

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    """Names of ``{placeholders}`` in a device id or topic."""
    return set(_PLACEHOLDER.findall(text))


def templated_text_warnings(devices: list[Any]) -> list[tuple[str, str]]:
    """``(key path, message)`` for a ``name`` or ``location`` placeholder the id lacks.

    A templated MQTT device fills its id's placeholders into its name and location; any other
    ``{word}`` there is shown to operators as written, which is most likely a typo.
    """
    found: list[tuple[str, str]] = []
    for i, dev in enumerate(devices):
        if not isinstance(dev, MqttDevice):
            continue
        names = placeholders(dev.id)
        texts = [("name", dev.name)] + [(f"location.{k}", v)
                                         for k, v in dev.location.model_dump().items()]
        for key, text in texts:
            unknown = sorted(placeholders(text) - names) if text else []
            if unknown:
                have = ", ".join("{" + n + "}" for n in sorted(names)) or "none"
                found.append((f"devices[{i}].{key}",
                              f"{text!r}: {{{unknown[0]}}} is not a placeholder of the device "
                              f"id {dev.id!r} (it has {have}); it would be shown as written"))
    return found


def _fill(topic: str, fills: dict[str, str]) -> str:
    for name, value in fills.items():
        topic = topic.replace("{" + name + "}", value)
    return topic


def _check_payload_field(key: str, path: str) -> None:
    """A ``split_by`` or ``select`` field path, checked under the key it is given for."""
    try:
        compile_path(path)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc} (a field of the JSON payload, "
                         f"e.g. 'zone' or 'event.zone_no')") from None


def _check_topic(topic: str) -> None:
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be a whole last level of the topic: {topic!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole topic level: {topic!r}")
        if "{" in level and not _PLACEHOLDER.fullmatch(level):
            raise ValueError(f"a placeholder must be a whole topic level, like "
                             f"'site/{{door}}/state': {topic!r}")
    names = _PLACEHOLDER.findall(topic)
    if len(names) != len(set(names)):
        raise ValueError(f"a placeholder appears twice in {topic!r}")


def _check_offline(dev: MqttDevice) -> None:
    if dev.offline == "never" and dev.stale_after is not None:
        raise ValueError("offline: never (the device reports only on change) contradicts "
                         "stale_after, which marks it comm-loss when it is silent: remove one")
    if dev.offline is not None and dev.offline != "never":
        unknown = set(dev.offline.heartbeat) - {p.name for p in dev.points}
        if unknown:
            raise ValueError(f"offline.heartbeat: the device has no point(s) "
                             f"{', '.join(sorted(unknown))}")


def _check_unique_points(points: list[Any]) -> None:
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            raise ValueError(f"point name {point.name!r} is used twice")
        seen.add(point.name)
