"""Pydantic v2 models of the site config file (the only thing a field engineer edits).

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
The reference for each key is ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from gateway.config._types import Duration, Identifier

__all__ = [
    "AllCondition",
    "AnyCondition",
    "BackoffConfig",
    "BrokerConfig",
    "Condition",
    "DeviceConfig",
    "GatewayConfig",
    "Location",
    "Message",
    "ModbusPoint",
    "ModbusRtuDevice",
    "ModbusTcpDevice",
    "MqttDevice",
    "MqttPoint",
    "NotCondition",
    "PointCondition",
    "RuleConfig",
    "SiteConfig",
    "TlsConfig",
    "UpstreamConfig",
    "placeholders",
]

Value = bool | int | float | str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- site and brokers


class SiteConfig(_Model):
    """Who this gateway is; the ids appear in every upstream topic and work order."""

    id: Identifier = Field(description="Property (site) id, unique across the fleet.")
    name: str = Field(min_length=1, description="Human name of the property, e.g. 阳光花园.")
    gateway_id: Identifier = Field(description="This gateway's id, unique within the site.")
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone of the site.")


class BackoffConfig(_Model):
    """Reconnect policy: ``min(initial * 2**tries, max)`` seconds with +/- ``jitter``."""

    initial: Duration = Field(default=0.5, gt=0)
    max: Duration = Field(default=30.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _cap_above_initial(self) -> BackoffConfig:
        if self.max < self.initial:
            raise ValueError(f"max ({self.max}s) must be >= initial ({self.initial}s)")
        return self


class TlsConfig(_Model):
    """TLS for an MQTT connection. With no ``ca_file`` the system's trust store is used."""

    ca_file: Path | None = None
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM).")
    key_file: Path | None = Field(default=None, description="Client private key (PEM).")
    insecure: bool = Field(default=False,
                           description="Skip host-name verification. Never in production.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class BrokerConfig(_Model):
    """One MQTT broker: a device-side broker, or the platform's upstream broker."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="Default 1883, or 8883 with tls.")
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(default=None,
                                  description="Default: propgw-<gateway_id>-<broker id>.")
    keepalive: Duration = Field(default=30.0, ge=5, le=3600)
    connect_timeout: Duration = Field(default=10.0, gt=0, le=120)
    tls: TlsConfig | None = None
    reconnect: BackoffConfig = BackoffConfig()
    max_queued_messages: int = Field(
        default=10_000, ge=100,
        description="Incoming messages buffered while the gateway is busy; beyond this the "
                    "MQTT client drops and the drop is logged.")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883


# --------------------------------------------------------------------------- devices and points


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
    map: dict[str, Value] | None = Field(
        default=None,
        description="Value map applied after decoding, e.g. {0: stopped, 1: running} or "
                    "{OPEN: true}. Keys are compared as text; unmapped values pass through.")

    @field_validator("map", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_map_key(k): v for k, v in value.items()}
        return value


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
    location: Location = Location()
    profile: str | None = Field(default=None,
                                description="Device profile whose points are merged in.")
    enabled: bool = True


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
    points: list[MqttPoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _placeholders_consistent(self) -> MqttDevice:
        _check_unique_points(self.points)
        needed = placeholders(self.id)
        for point in self.points:
            missing = needed - placeholders(point.topic)
            if missing:
                raise ValueError(
                    f"point {point.name!r}: topic {point.topic!r} lacks placeholder(s) "
                    f"{', '.join('{' + m + '}' for m in sorted(missing))} used in the device id")
        return self


DeviceConfig = Annotated[ModbusTcpDevice | ModbusRtuDevice | MqttDevice,
                         Field(discriminator="driver")]


# --------------------------------------------------------------------------- rules


class PointCondition(_Model):
    """Compares one point's value; exactly one operator."""

    point: Identifier
    eq: Value | None = None
    ne: Value | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    in_: list[Value] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _one_operator(self) -> PointCondition:
        ops = [op for op in ("eq", "ne", "gt", "ge", "lt", "le", "in_")
               if getattr(self, op) is not None]
        if len(ops) != 1:
            raise ValueError("a point condition needs exactly one of eq, ne, gt, ge, lt, le, "
                             f"in; got {', '.join(o.rstrip('_') for o in ops) or 'none'}")
        return self


class AllCondition(_Model):
    """True when every member is true."""

    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Model):
    """True when at least one member is true."""

    any: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    """True when the member is false."""

    not_: Condition = Field(alias="not")


def _condition_tag(value: Any) -> str | None:
    # Pick the member by its key so an error is reported once, not once per union member.
    if isinstance(value, dict):
        for key, tag in (("point", "point"), ("all", "all"), ("any", "any"), ("not", "not")):
            if key in value:
                return tag
    elif isinstance(value, BaseModel):
        return {PointCondition: "point", AllCondition: "all", AnyCondition: "any",
                NotCondition: "not"}.get(type(value))
    return None


Condition = Annotated[
    Annotated[PointCondition, Tag("point")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition is {point: NAME, eq|ne|gt|ge|lt|le|in: VALUE}, "
                             "{all: [...]}, {any: [...]} or {not: {...}}",
    ),
]


class Message(_Model):
    """Operator text; ``{device}``, ``{device_name}``, ``{location}`` and point names in
    braces are replaced with current values."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class RuleConfig(_Model):
    """Raises an alarm when ``when`` has held for ``for`` seconds on a device."""

    id: Identifier
    description: str | None = None
    devices: list[str] | None = Field(default=None, description="Device ids it applies to.")
    kind: str | None = Field(default=None, description="Or: every device of this kind.")
    when: Condition
    for_: Duration = Field(default=0.0, alias="for", description="On-delay.")
    clear_for: Duration = Field(default=0.0, description="Off-delay before returning to "
                                                         "normal.")
    category: str = Field(pattern=r"^[a-z][a-z0-9_]*$",
                          description="e.g. elevator_entrapment, fire_alarm.")
    priority: Literal["P0", "P1", "P2", "P3"]
    message: Message
    work_order: bool = Field(default=True, description="Raise a work order upstream.")

    @model_validator(mode="after")
    def _has_target(self) -> RuleConfig:
        if (self.devices is None) == (self.kind is None):
            raise ValueError("give exactly one of 'devices' (a list of ids) or 'kind'")
        return self

    def points(self) -> set[str]:
        """Point names the condition reads."""
        return _condition_points(self.when)


# --------------------------------------------------------------------------- upstream, top level


class UpstreamConfig(_Model):
    """Where alarms and work orders go: the platform's MQTT broker."""

    broker: str = Field(description="Broker id from 'brokers'.")
    topic_prefix: str = Field(default="propgw", pattern=r"^[^#+]+$")
    qos: Literal[1, 2] = 1


class GatewayConfig(_Model):
    """The whole site config file."""

    site: SiteConfig
    brokers: dict[Identifier, BrokerConfig] = Field(default_factory=dict)
    upstream: UpstreamConfig | None = None
    devices: list[DeviceConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _cross_references(self) -> GatewayConfig:
        problems: list[str] = []
        ids: dict[str, int] = {}
        for i, dev in enumerate(self.devices):
            if dev.id in ids:
                problems.append(f"devices[{i}].id: {dev.id!r} is already used by "
                                f"devices[{ids[dev.id]}]")
            ids.setdefault(dev.id, i)
        problems += self._check_brokers()
        problems += self._check_serial_buses()
        problems += self._check_rules()
        if problems:
            # One line per problem, "path: message"; the loader splits them back apart.
            raise ValueError("\n".join(problems))
        return self

    def _check_brokers(self) -> list[str]:
        problems = []
        if self.upstream is not None and self.upstream.broker not in self.brokers:
            problems.append(f"upstream.broker: {self.upstream.broker!r} is not in brokers "
                            f"(known: {', '.join(self.brokers) or 'none'})")
        for i, dev in enumerate(self.devices):
            if not isinstance(dev, MqttDevice):
                continue
            if dev.broker is None:
                if len(self.device_brokers()) != 1:
                    problems.append(f"devices[{i}].broker: required when there is not exactly "
                                    f"one device broker (known: {', '.join(self.brokers)})")
            elif dev.broker not in self.brokers:
                problems.append(f"devices[{i}].broker: {dev.broker!r} is not in brokers "
                                f"(known: {', '.join(self.brokers) or 'none'})")
        return problems

    def _check_serial_buses(self) -> list[str]:
        problems = []
        first: dict[str, tuple[int, ModbusRtuDevice]] = {}
        seen_units: dict[tuple[str, int], int] = {}
        for i, dev in enumerate(self.devices):
            if isinstance(dev, ModbusRtuDevice):
                j, other = first.setdefault(dev.port, (i, dev))
                if dev.serial_settings != other.serial_settings:
                    problems.append(f"devices[{i}]: serial settings of {dev.port} "
                                    f"{dev.serial_settings} differ from devices[{j}] "
                                    f"{other.serial_settings}; one bus has one setting")
                key = (dev.port, dev.unit)
                if key in seen_units:
                    problems.append(f"devices[{i}].unit: unit {dev.unit} on {dev.port} is "
                                    f"already used by devices[{seen_units[key]}]")
                seen_units.setdefault(key, i)
        return problems

    def _check_rules(self) -> list[str]:
        problems = []
        by_id = {d.id: d for d in self.devices}
        kinds = {d.kind for d in self.devices}
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.id in seen:
                problems.append(f"rules[{i}].id: {rule.id!r} is used twice")
            seen.add(rule.id)
            if rule.kind is not None and rule.kind not in kinds:
                problems.append(f"rules[{i}].kind: no device has kind {rule.kind!r} "
                                f"(kinds: {', '.join(sorted(kinds)) or 'none'})")
            for dev_id in rule.devices or []:
                if dev_id not in by_id:
                    problems.append(f"rules[{i}].devices: unknown device {dev_id!r}")
            for dev in self.rule_devices(rule):
                names = {p.name for p in dev.points}
                missing = rule.points() - names
                if missing:
                    problems.append(f"rules[{i}].when: device {dev.id!r} has no point(s) "
                                    f"{', '.join(sorted(missing))}")
        return problems

    def device_brokers(self) -> set[str]:
        """Broker ids other than the upstream one."""
        upstream = self.upstream.broker if self.upstream else None
        return {b for b in self.brokers if b != upstream} or set(self.brokers)

    def rule_devices(self, rule: RuleConfig) -> list[DeviceConfig]:
        """Enabled devices a rule applies to."""
        if rule.devices is not None:
            wanted = set(rule.devices)
            return [d for d in self.devices if d.id in wanted and d.enabled]
        return [d for d in self.devices if d.kind == rule.kind and d.enabled]


# --------------------------------------------------------------------------- helpers

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    """Names of ``{placeholders}`` in a device id or topic."""
    return set(_PLACEHOLDER.findall(text))


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


def _check_unique_points(points: list[Any]) -> None:
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            raise ValueError(f"point name {point.name!r} is used twice")
        seen.add(point.name)


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def _condition_points(cond: Condition) -> set[str]:
    if isinstance(cond, PointCondition):
        return {cond.point}
    if isinstance(cond, AllCondition):
        return set().union(*(_condition_points(c) for c in cond.all))
    if isinstance(cond, AnyCondition):
        return set().union(*(_condition_points(c) for c in cond.any))
    return _condition_points(cond.not_)


AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()
RuleConfig.model_rebuild()
