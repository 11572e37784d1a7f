"""The library log policy (gateway.logs) as a pure unit: records in, formatted lines out, time
moved by hand."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pymodbus.exceptions import ModbusIOException

from gateway.logs import LibraryLogFilter, LogLimiter


@dataclass
class Now:
    t: float = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Rig:
    now: Now
    out: io.StringIO
    handler: logging.Handler
    filter: LibraryLogFilter
    loggers: list[logging.Logger] = field(default_factory=list)

    def logger(self, name: str) -> logging.Logger:
        logger = logging.getLogger(name)
        logger.addHandler(self.handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        self.loggers.append(logger)
        return logger

    @property
    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


@pytest.fixture
def rig() -> Iterator[Rig]:
    now = Now()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    library_filter = LibraryLogFilter(handler.handle, limiter=LogLimiter(clock=now))
    handler.addFilter(library_filter)
    r = Rig(now, out, handler, library_filter)
    yield r
    for logger in r.loggers:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def _raise(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a logged exception has."""
    def fail() -> None:
        raise exc

    try:
        fail()
    except BaseException as caught:
        return caught
    raise AssertionError("unreachable")


def test_a_library_traceback_becomes_one_line_with_the_exception(rig: Rig) -> None:
    exc = _raise(ModbusIOException("Unable to decode request"))
    rig.logger("asyncio").error("Fatal error: protocol.data_received() call failed.\n"
                                "protocol: <TransactionManager>\ntransport: <Transport>",
                                exc_info=exc)
    assert rig.lines == [
        "WARNING asyncio: Fatal error: protocol.data_received() call failed. "
        "(pymodbus.exceptions.ModbusIOException: Modbus Error: [Input/Output] Unable to "
        "decode request)"], "pymodbus's exception, levelled as pymodbus: a WARNING"


def test_pymodbus_frame_dumps_are_cut_and_its_errors_are_warnings(rig: Rig) -> None:
    rig.logger("pymodbus.logging").error(
        "ERROR: request ask for id=1 but got id=9, Skipping.\n>>>>> send: 0x0 0x1\n"
        ">>>>> recv: 0x0 0x1 0x0")
    assert rig.lines == ["WARNING pymodbus.logging: ERROR: request ask for id=1 but got id=9, "
                         "Skipping."]


def test_repeats_are_counted_and_reported_once_per_growing_window(rig: Rig) -> None:
    log = rig.logger("pymodbus.logging")
    for i in range(100):
        log.warning("Unable to decode frame Modbus Error: Unknown response %d", 80 + i % 3)
        rig.now.t += 0.1  # 10 s of noise
    assert len(rig.lines) == 1
    rig.now.t += 60
    log.warning("Unable to decode frame Modbus Error: Unknown response 85")
    assert len(rig.lines) == 2
    assert rig.lines[1].startswith(
        "WARNING pymodbus.logging: 99 similar message(s) suppressed in the last 70 s, the last: "
        "Unable to decode frame")
    # Still noisy: the next window is twice as long, so the next summary is 2 minutes away.
    for _ in range(100):
        rig.now.t += 1
        log.warning("Unable to decode frame Modbus Error: Unknown response 85")
    assert len(rig.lines) == 2
    rig.now.t += 25
    log.warning("Unable to decode frame Modbus Error: Unknown response 85")
    assert len(rig.lines) == 3 and "101 similar message(s) suppressed" in rig.lines[2]


def test_when_the_noise_stops_the_count_comes_with_the_next_line_of_ours(rig: Rig) -> None:
    for _ in range(3):
        rig.logger("pymodbus.logging").warning("Repeating....")
    rig.now.t += 61
    rig.logger("drivers.modbus._link").info("device E1 recovered")
    assert rig.lines[1:] == [
        "WARNING pymodbus.logging: 2 similar message(s) suppressed in the last 61 s, the last: "
        "Repeating....",
        "INFO drivers.modbus._link: device E1 recovered"]


def test_what_is_left_is_reported_at_exit(rig: Rig) -> None:
    log = rig.logger("aiohttp.server")
    for _ in range(5):
        log.warning("Error handling request from %s", "10.0.0.9")
    rig.filter.flush()
    assert rig.lines[1].startswith("WARNING aiohttp.server: 4 similar message(s) suppressed")


def test_our_own_records_pass_untouched_and_unlimited(rig: Rig) -> None:
    log = rig.logger("gateway.workorders._desk")
    for i in range(50):
        log.warning("work order %s raised", i)
    exc = _raise(ValueError("boom"))
    log.error("failed", exc_info=exc)
    assert len([line for line in rig.lines if "raised" in line]) == 50
    assert "Traceback (most recent call last)" in rig.out.getvalue()


def test_a_bug_of_ours_reported_by_asyncio_keeps_its_traceback(rig: Rig) -> None:
    # A function whose module is one of ours, as a gateway task's code would be.
    namespace: dict[str, object] = {"__name__": "gateway.some_stage"}
    exec("def step():\n    raise RuntimeError('bug in a gateway task')\n", namespace)
    try:
        namespace["step"]()  # type: ignore[operator]
    except RuntimeError as exc:
        caught = exc
    rig.logger("asyncio").error("Task exception was never retrieved", exc_info=caught)
    assert "Traceback (most recent call last)" in rig.out.getvalue()
    assert "RuntimeError: bug in a gateway task" in rig.out.getvalue()


def test_critical_and_debug_keep_their_detail() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(LibraryLogFilter(handler.handle, keep_detail=True))
    record = logging.LogRecord("amqtt.broker", logging.ERROR, __file__, 1, "a\nb", None,
                               (ValueError, ValueError("x"), None))
    handler.handle(record)
    assert out.getvalue().startswith("a\nb\n") and "ValueError: x" in out.getvalue()
    out.truncate(0)
    quiet = logging.StreamHandler(out)
    quiet.addFilter(LibraryLogFilter(quiet.handle))
    quiet.handle(logging.LogRecord("amqtt.broker", logging.CRITICAL, __file__, 1, "c\nd",
                                   None, None))
    assert "c\nd" in out.getvalue()
