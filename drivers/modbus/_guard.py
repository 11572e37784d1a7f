"""The one boundary between pymodbus and the gateway: every pymodbus call goes through here.

It gives each request a named deadline, maps pymodbus's exceptions and error responses onto
:mod:`gateway.errors` with device/unit/address context, and restores cancellation that
pymodbus may have turned into an exception: pymodbus reports a cancelled request as
``ModbusIOException`` (and an ``asyncio.timeout`` as one too), which would let a retry loop
ignore shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, Literal, Protocol

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from gateway.aio import raise_if_cancelling
from gateway.config import ModbusRtuDevice, ModbusTcpDevice
from gateway.errors import DecodeError, DeviceRejected, DeviceTimeout, LinkError

__all__ = [
    "EXCEPTION_NAMES",
    "ModbusClient",
    "ModbusResponse",
    "UndecodableAnswer",
    "guarded_close",
    "guarded_connect",
    "guarded_read",
    "survive_undecodable_answers",
]

log = logging.getLogger(__name__)

Table = Literal["coil", "discrete_input", "holding", "input"]
ModbusDevice = ModbusTcpDevice | ModbusRtuDevice

_FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}

#: Modbus application protocol v1.1b3 §7.
EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusResponse(Protocol):
    """The parts of a pymodbus response PDU the driver reads."""

    @property
    def function_code(self) -> int: ...
    @property
    def exception_code(self) -> int: ...
    @property
    def registers(self) -> Sequence[int]: ...
    @property
    def bits(self) -> Sequence[bool]: ...
    def isError(self) -> bool: ...


class ModbusClient(Protocol):
    """The parts of ``AsyncModbusTcpClient``/``AsyncModbusSerialClient`` the driver uses.

    Unit tests may hand a :class:`~drivers.modbus.ModbusLink` a small fake with this shape.
    """

    @property
    def connected(self) -> bool: ...
    async def connect(self) -> bool: ...
    def close(self) -> None: ...
    def read_coils(self, address: int, *, count: int = 1, device_id: int = 1,
                   no_response_expected: bool = False) -> Awaitable[ModbusResponse]: ...
    def read_discrete_inputs(self, address: int, *, count: int = 1, device_id: int = 1,
                             no_response_expected: bool = False
                             ) -> Awaitable[ModbusResponse]: ...
    def read_holding_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                               no_response_expected: bool = False
                               ) -> Awaitable[ModbusResponse]: ...
    def read_input_registers(self, address: int, *, count: int = 1, device_id: int = 1,
                             no_response_expected: bool = False
                             ) -> Awaitable[ModbusResponse]: ...


async def guarded_read(
    client: ModbusClient,
    device: ModbusDevice,
    table: str,
    address: int,
    count: int,
    *,
    link: str,
) -> list[int] | list[bool]:
    """Read ``count`` registers (or bits) of ``table`` from ``device``, within its timeout.

    Args:
        client: A connected pymodbus async client (or a fake of the same shape).
        device: The device config: its ``unit``, ``timeout`` and ``id`` are used.
        table: ``coil``, ``discrete_input``, ``holding`` or ``input``.
        address: First address.
        count: Registers or bits to read.
        link: Name of the connection, for :class:`~gateway.errors.LinkError`.

    Returns:
        Exactly ``count`` register values (ints) or bits (bools).

    Raises:
        DeviceTimeout: No (valid) answer within ``device.timeout``.
        DeviceRejected: The device answered with a Modbus exception; ``code`` holds it.
        DecodeError: The answer does not fit the request (wrong function, wrong length).
        LinkError: The connection is down.
        asyncio.CancelledError: The calling task was cancelled; never swallowed.
    """
    fc = _FUNCTION_CODES[table]
    method = {
        "coil": client.read_coils,
        "discrete_input": client.read_discrete_inputs,
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
    }[table]
    with _translate(client, device, address, link):
        async with asyncio.timeout(device.timeout):
            try:
                response = await method(address, count=count, device_id=device.unit)
            except ModbusException as exc:
                # Inside the timeout block, so that our own deadline still turns into
                # TimeoutError when pymodbus reports the cancellation as an I/O error.
                _reraise_cancellation(exc)
                raise
    # pymodbus waits for the answer with asyncio.wait_for, which in Python 3.11 returns the
    # answer when it arrives in the same loop iteration as a cancellation, dropping the
    # cancellation: a link polling a prompt device then ignored every cancel() and a shutdown
    # hung (about one scenario run in 100). Outside the timeout block, whose own cancellation
    # is taken back by then.
    raise_if_cancelling()
    return _payload(response, device, table=table, fc=fc, address=address, count=count)


async def guarded_connect(client: ModbusClient, *, link: str, connect_timeout: float) -> None:
    """Open the client's connection within ``connect_timeout`` seconds.

    Raises:
        LinkError: The endpoint or port could not be opened in time.
        asyncio.CancelledError: The calling task was cancelled; never swallowed.
    """
    try:
        async with asyncio.timeout(connect_timeout):
            try:
                connected = await client.connect()
            except ModbusException as exc:
                _reraise_cancellation(exc)
                raise
            finally:
                # pymodbus connects under asyncio.wait_for, which in Python 3.11 drops a
                # cancellation that races a refused connection and then returns False: the
                # link would reconnect for ever instead of stopping (a hung shutdown, about
                # one scenario run in 35).
                raise_if_cancelling()
    except TimeoutError as exc:
        raise LinkError(f"connect timed out after {connect_timeout:g}s", link=link) from exc
    except (ModbusException, OSError) as exc:
        raise LinkError(f"cannot connect: {exc}", link=link) from exc
    if not connected:
        # pymodbus logs the OS error itself and only returns False.
        raise LinkError("cannot connect", link=link)


class UndecodableAnswer(ModbusException):
    """A well-framed answer pymodbus could not decode (undefined function code, bad PDU)."""


def survive_undecodable_answers(client: Any) -> None:
    """Make an undecodable answer fail its request instead of the connection.

    pymodbus 3.x raises out of its protocol's ``data_received`` when a well-framed answer does
    not decode; asyncio then logs a traceback and closes the transport, so one device answering
    nonsense takes every device on the link down with it, on every poll. Wrapped here, the
    pending request fails with :class:`UndecodableAnswer` (a :class:`DecodeError` to the
    driver, BAD readings for that device) and the bytes received so far are dropped.

    Args:
        client: A pymodbus async client (``AsyncModbusTcpClient``/``AsyncModbusSerialClient``).
    """
    manager = client.ctx
    receive = manager.callback_data

    def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
        try:
            return int(receive(data, addr=addr))
        except ModbusException as exc:
            pending = manager.response_future
            if not pending.done():
                pending.set_exception(UndecodableAnswer(str(exc)))
            return len(data)

    manager.callback_data = callback_data


def guarded_close(client: ModbusClient, *, link: str) -> None:
    """Close the client; a failure to close is logged, never raised (we are leaving anyway)."""
    try:
        client.close()
    except (ModbusException, OSError) as exc:
        log.debug("%s: error while closing: %s", link, exc)


@contextlib.contextmanager
def _translate(client: ModbusClient, device: ModbusDevice, address: int,
               link: str) -> Iterator[None]:
    where = _Where(device, address)
    try:
        yield
    except TimeoutError as exc:
        if not client.connected:
            raise LinkError("connection lost during a request", link=link) from exc
        raise DeviceTimeout(f"no answer within {device.timeout:g}s", device=where.device,
                            unit=where.unit, address=where.address) from exc
    except ConnectionException as exc:
        raise LinkError(f"not connected: {exc}", link=link) from exc
    except ModbusIOException as exc:
        # With our deadline shorter than pymodbus's, this is a reply for another unit or
        # transaction, or pymodbus giving up on the connection.
        if not client.connected:
            raise LinkError(f"connection closed: {exc}", link=link) from exc
        raise DeviceTimeout(f"no valid answer: {exc}", device=where.device, unit=where.unit,
                            address=where.address) from exc
    except UndecodableAnswer as exc:
        raise DecodeError("answer does not decode (undefined function code or malformed data)",
                          device=where.device, unit=where.unit, address=where.address) from exc
    except ModbusException as exc:
        raise DecodeError(f"cannot decode answer: {exc}", device=where.device, unit=where.unit,
                          address=where.address) from exc
    except OSError as exc:
        raise LinkError(f"I/O error: {exc}", link=link) from exc


class _Where:
    """Context carried by every device error."""

    __slots__ = ("address", "device", "unit")

    def __init__(self, device: ModbusDevice, address: int) -> None:
        self.device, self.unit, self.address = device.id, device.unit, address

    def decode_error(self, message: str) -> DecodeError:
        return DecodeError(message, device=self.device, unit=self.unit, address=self.address)


def _reraise_cancellation(exc: BaseException) -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _payload(response: ModbusResponse, device: ModbusDevice, *, table: str, fc: int,
             address: int, count: int) -> list[int] | list[bool]:
    where = _Where(device, address)
    if response.isError():
        code = response.exception_code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        raise DeviceRejected(f"exception code {code} ({name})", code=code, device=where.device,
                             unit=where.unit, address=where.address)
    if response.function_code != fc:
        raise where.decode_error(f"answer has function code {response.function_code}, "
                                 f"asked {fc}")
    if table in ("coil", "discrete_input"):
        bits = list(response.bits)
        # Bits come padded to whole bytes, so more than asked is normal; fewer is not.
        if len(bits) < count:
            raise where.decode_error(f"answer has {len(bits)} bits, asked {count}")
        return [bool(b) for b in bits[:count]]
    registers = list(response.registers)
    if len(registers) != count:
        raise where.decode_error(f"answer has {len(registers)} registers, asked {count}")
    return registers
