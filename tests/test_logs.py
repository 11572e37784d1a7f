"""The log policy (gateway.logs) as a pure unit: records in, formatted lines out, time moved
by hand; and the stamps in the site's time zone."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from pymodbus.exceptions import ModbusIOException

from gateway import logs
from gateway.logs import LibraryLogFilter, LogLimiter, SiteTimeFormatter, priority_level


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


# --------------------------------------------------------------------------- time stamps


def _record_at(moment: dt.datetime) -> logging.LogRecord:
    record = logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = moment.timestamp()
    record.msecs = moment.microsecond // 1000
    return record


@pytest.mark.parametrize(("zone", "utc", "stamp"), [
    ("Asia/Shanghai", dt.datetime(2026, 12, 5, 14, 40, 1, 123000, tzinfo=dt.UTC),
     "2026-12-05 22:40:01,123+0800"),
    # The offset follows the date (summer time), not the zone's usual one.
    ("Europe/Berlin", dt.datetime(2026, 7, 1, 0, 0, 0, 5000, tzinfo=dt.UTC),
     "2026-07-01 02:00:00,005+0200"),
    ("Europe/Berlin", dt.datetime(2026, 1, 1, 0, 0, 0, 999000, tzinfo=dt.UTC),
     "2026-01-01 01:00:00,999+0100"),
])
def test_stamps_are_local_time_with_the_offset(zone: str, utc: dt.datetime, stamp: str) -> None:
    formatter = SiteTimeFormatter("%(asctime)s %(message)s", tz=ZoneInfo(zone))
    assert formatter.format(_record_at(utc)) == f"{stamp} hello"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A stream that logs.configure writes to; the root logger is put back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    pymodbus = logging.getLogger("pymodbus").level
    monkeypatch.setattr(logs, "_installed", None)
    yield io.StringIO()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("pymodbus").setLevel(pymodbus)


_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def test_the_site_zone_stamps_every_line(configured: io.StringIO) -> None:
    logs.configure("INFO", configured, timezone="Asia/Shanghai")
    logging.getLogger("gateway.test").warning("door %s forced", "D1")
    assert re.fullmatch(rf"{_LINE}\+0800 WARNING gateway\.test: door D1 forced\n",
                        configured.getvalue()), configured.getvalue()


def test_an_unknown_zone_gives_utc_and_says_so_once(configured: io.StringIO) -> None:
    logs.configure("INFO", configured, timezone="Asia/Shangai")
    logging.getLogger("gateway.test").info("next")
    lines = configured.getvalue().splitlines()
    assert len(lines) == 2 and all(re.match(rf"{_LINE}\+0000 ", line) for line in lines)
    assert lines[0].endswith("WARNING gateway.logs: unknown time zone 'Asia/Shangai' (expected "
                             "an IANA name such as Asia/Shanghai); log times are UTC")


def test_without_a_time_zone_database_the_stamps_are_utc(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_database(key: str) -> ZoneInfo:
        raise ZoneInfoNotFoundError(f"No time zone found with key {key}")

    monkeypatch.setattr(logs, "ZoneInfo", no_database)
    logs.configure("WARNING", configured, timezone="Asia/Shanghai")
    [line] = configured.getvalue().splitlines()
    assert re.match(rf"{_LINE}\+0000 WARNING gateway\.logs: time zone 'Asia/Shanghai' cannot "
                    rf"be loaded: this system has no time-zone database", line), line


def test_without_a_zone_the_stamps_are_the_hosts_local_time(configured: io.StringIO) -> None:
    logs.configure("INFO", configured)
    logging.getLogger("gateway.test").info("local")
    offset = dt.datetime.now().astimezone().strftime("%z")
    assert re.fullmatch(rf"{_LINE}{re.escape(offset)} INFO    gateway\.test: local\n",
                        configured.getvalue()), configured.getvalue()


# --------------------------------------------------------------------------- announcements


def test_priorities_map_to_levels_journalctl_can_pick() -> None:
    assert [priority_level(p) for p in ("P0", "P1", "P2", "P3", "P9")] == [
        logging.CRITICAL, logging.ERROR, logging.WARNING, logging.WARNING, logging.WARNING]


def test_announcements_can_be_left_to_a_caller_that_prints_them(
        configured: io.StringIO) -> None:
    logs.configure("INFO", configured, announcements=False)
    log = logging.getLogger("gateway.alarms._rules")
    log.critical("alarm P0 trapped on E1: trapped", extra={"priority": "P0"})
    log.error("alarm journal cannot be written")
    assert configured.getvalue().count("\n") == 1
    assert "ERROR   gateway.alarms._rules: alarm journal cannot be written" in \
        configured.getvalue()


@pytest.mark.parametrize("journal", [True, False])
def test_under_the_journal_each_line_carries_its_syslog_severity(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch, journal: bool) -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader:
        with os.fdopen(write_fd, "w", encoding="utf-8") as out:
            st = os.fstat(write_fd)
            # systemd names the journal's stream by device and inode; any other is not it.
            monkeypatch.setenv("JOURNAL_STREAM",
                               f"{st.st_dev}:{st.st_ino + (0 if journal else 1)}")
            logs.configure("DEBUG", out, timezone="Asia/Shanghai")
            log = logging.getLogger("gateway.alarms._rules")
            log.log(priority_level("P0"), "alarm P0 trapped on E1", extra={"priority": "P0"})
            log.log(priority_level("P1"), "alarm P1 leak on W1", extra={"priority": "P1"})
            log.log(priority_level("P3"), "alarm P3 door on D1", extra={"priority": "P3"})
            log.info("alarm door on D1 returned to normal")
            log.debug("detail")
            root = logging.getLogger()
            for handler in root.handlers[:]:  # before the stream is closed
                if isinstance(handler, logging.StreamHandler) and handler.stream is out:
                    root.removeHandler(handler)
        lines = reader.read().decode().splitlines()  # the writer is closed: reads to EOF
    prefixes = [re.sub(r"\d{4}-.*", "", line) for line in lines]
    assert prefixes == (["<2>", "<3>", "<4>", "<6>", "<7>"] if journal else [""] * 5), lines
    assert lines[0].endswith("+0800 CRITICAL gateway.alarms._rules: alarm P0 trapped on E1")
