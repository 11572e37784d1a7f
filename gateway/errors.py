"""The gateway's exception tree; foreign errors are mapped onto it at one boundary per driver.

::

    GatewayError
    ├── ConfigError          the YAML file is wrong; carries every problem found, not the first
    ├── DeviceError          one device misbehaved (carries device id and, for Modbus, unit/address)
    │   ├── DeviceTimeout    it did not answer within its deadline
    │   ├── DeviceRejected   it answered with a protocol error (Modbus exception code)
    │   └── DecodeError      it answered with something that cannot be decoded
    ├── LinkError            a connection (TCP endpoint, serial port, MQTT broker) is down
    ├── AlarmActionRejected  an operator action does not fit the alarm's state (carries why)
    │   └── UnknownAlarm     no alarm with that id
    ├── StatusRefused        a platform's status answer cannot be applied (carries order and why)
    ├── JournalError         the alarm journal cannot be read or written (carries its path)
    └── WorkOrderLogError    the work-order history cannot be read or written (carries its path)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlarmActionRejected",
    "ConfigError",
    "ConfigProblem",
    "DecodeError",
    "DeviceError",
    "DeviceRejected",
    "DeviceTimeout",
    "GatewayError",
    "JournalError",
    "LinkError",
    "StatusRefused",
    "UnknownAlarm",
    "WorkOrderActionRefused",
    "WorkOrderLogError",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in a config file, located by its dotted key path."""

    path: str
    message: str
    found: str | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        found = f" (found: {self.found})" if self.found is not None else ""
        return _printable(f"{where}: {self.message}{found}")


def _printable(text: str) -> str:
    """``text`` on one line: a key or value from a hostile file may hold line breaks or
    terminal escapes, which are shown escaped (``\\n``, ``\\x1b``) instead."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class ConfigError(GatewayError):
    """A config file could not be loaded; ``problems`` lists every mistake found."""

    def __init__(self, file: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = _printable(f"{self.file}: {count} problem{'s' if count != 1 else ''}")
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


class DeviceError(GatewayError):
    """A device failed; attributes say which one and where."""

    def __init__(
        self,
        message: str,
        *,
        device: str,
        unit: int | None = None,
        address: int | None = None,
    ) -> None:
        self.device = device
        self.unit = unit
        self.address = address
        super().__init__(message)

    def __str__(self) -> str:
        where = [f"device {self.device}"]
        if self.unit is not None:
            where.append(f"unit {self.unit}")
        if self.address is not None:
            where.append(f"address {self.address}")
        return f"{', '.join(where)}: {self.args[0]}"


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class DeviceRejected(DeviceError):
    """The device answered with a protocol-level error (e.g. a Modbus exception code)."""

    def __init__(self, message: str, *, device: str, code: int, unit: int | None = None,
                 address: int | None = None) -> None:
        self.code = code
        super().__init__(message, device=device, unit=unit, address=address)


class DecodeError(DeviceError):
    """The device's answer cannot be decoded into the configured type."""


class LinkError(GatewayError):
    """A connection is down (TCP endpoint, serial port or MQTT broker)."""

    def __init__(self, message: str, *, link: str) -> None:
        self.link = link
        super().__init__(f"{link}: {message}")


class AlarmActionRejected(GatewayError):
    """An operator action was refused because of the alarm's current state.

    Attributes:
        alarm_id: The alarm acted on.
        action: e.g. ``acknowledge``, ``shelve``, ``reset``.
        state: The alarm's lifecycle state when the action was refused.
        reason: Why, in words an operator understands.
    """

    def __init__(self, *, alarm_id: str, action: str, state: str, reason: str) -> None:
        self.alarm_id = alarm_id
        self.action = action
        self.state = state
        self.reason = reason
        super().__init__(f"{action} {alarm_id} ({state}): {reason}")


class UnknownAlarm(AlarmActionRejected):
    """No alarm has this id (no configured rule, or never seen on that device)."""

    def __init__(self, *, alarm_id: str, action: str) -> None:
        super().__init__(alarm_id=alarm_id, action=action, state="unknown",
                         reason="no such alarm")


class StatusRefused(GatewayError):
    """The platform's answer about a work order was refused (its ``at`` cannot be true).

    Attributes:
        order_id: The work order the answer is about.
        reason: Why, in words the platform's developers can act on.
    """

    def __init__(self, *, order_id: str, reason: str) -> None:
        self.order_id = order_id
        self.reason = reason
        super().__init__(f"status answer for work order {order_id} refused: {reason}")


class WorkOrderActionRefused(GatewayError):
    """An operator's action on a work order (assign, status, follow-up) cannot be done.

    Attributes:
        order_id: The work order.
        reason: Which state it is in and what the action needs.
        unknown: The desk does not track the order (never known, closed for good, or
            forgotten): HTTP 404 rather than 409.
    """

    def __init__(self, *, order_id: str, reason: str, unknown: bool = False) -> None:
        self.order_id = order_id
        self.reason = reason
        self.unknown = unknown
        super().__init__(f"work order {order_id}: {reason}")


class JournalError(GatewayError):
    """The alarm journal failed (disk full, I/O error, closed, newer schema)."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(f"alarm journal {path}: {message}")


class WorkOrderLogError(GatewayError):
    """The work-order history failed (disk full, I/O error, closed).

    Attributes:
        path: The history's file (``:memory:`` when it has none).
        reason: What went wrong, without the path.
    """

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"work-order history {path}: {message}")
