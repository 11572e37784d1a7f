"""Keeps the gateway's log readable, and small enough for an SD card, whatever a library logs.

Only the command-line entry point configures logging (:func:`configure`); modules just use
``logging.getLogger(__name__)``.

Lines are stamped in the site's time zone with its UTC offset
(``2026-12-05 22:40:01,123+0800``): the people on duty read local time, and the offset keeps
the line unambiguous for anyone comparing it with the platform's UTC records. Without the
time-zone database (or with an unknown zone name) the stamps are UTC, said once at WARNING.

The line announcing an alarm or a work order is levelled by its priority
(:func:`priority_level`: P0 CRITICAL, P1 ERROR, P2/P3 WARNING), so that ``journalctl -p crit``
shows exactly the life-safety ones; it carries the priority as the record attribute
``priority``. The journal learns a line's level from a ``<N>`` syslog prefix (sd-daemon(3),
systemd's ``SyslogLevelPrefix=``, on by default), which is written when the stream is the
journal (``$JOURNAL_STREAM`` names its device and inode): without it every line is ``info``.

Our own loggers (``gateway.*``, ``drivers.*``, ``simulators.*``, ``propgw``) already log a
failure once, on its transition, and its recovery once; their records pass untouched, and are
never rate-limited by message: two work orders share a message template but are different news.

Every other logger belongs to a library (pymodbus, aiohttp, asyncio, aiomqtt/paho as ``mqtt``,
amqtt, ...), which may log the same complaint on every request. Their records are:

* **one line each**: a traceback is replaced by the exception's type and message, and
  multi-line text (pymodbus appends its last frames as ``>>>>> recv: ...`` lines, asyncio the
  protocol and transport) is cut to its first line. Below CRITICAL only; and not at all when the
  gateway runs at DEBUG, where the detail is what one is looking for;
* **levelled**: pymodbus's ERRORs are about a peer's frames, which the Modbus driver already
  reports as device health, so they are capped at WARNING. An exception from a library that
  asyncio logs (a protocol callback that raised) is levelled as that library;
* **rate-limited** by (logger, message with its numbers masked): the first record passes; the
  repeats inside its window are counted and dropped; once the window has passed, one line says
  how many were suppressed (written before the next record of any logger, and at exit). A
  window in which something was suppressed is followed by one twice as long (1 min, 2 min,
  ... up to 1 h), so steady noise costs a few dozen lines a day.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["OUR_LOGGERS", "LibraryLogFilter", "LogLimiter", "SiteTimeFormatter", "configure",
           "one_line", "priority_level"]

#: Logger name roots of propgw itself.
OUR_LOGGERS = frozenset({"gateway", "drivers", "simulators", "propgw"})

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Highest level a library's record keeps, by library (logger name root).
_LEVEL_CAPS = {"pymodbus": logging.WARNING}
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")
_PRIORITY_LEVELS = {"P0": logging.CRITICAL, "P1": logging.ERROR}
#: Syslog severities (sd-daemon(3) prefixes), highest logging level first.
_SYSLOG = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_installed: logging.Handler | None = None


def configure(level: str, stream: TextIO | None = None, *, timezone: str | None = None,
              announcements: bool = True) -> LibraryLogFilter:
    """Log to ``stream`` (default stderr) at ``level``, with the library policy above.

    Args:
        level: A logging level name.
        stream: Where lines go; default stderr.
        timezone: IANA zone of the time stamps (the site's); default the host's local time.
            One that cannot be loaded gives UTC and one WARNING.
        announcements: False drops the lines announcing alarms and work orders (those with a
            ``priority``), for a caller that prints them itself (``propgw demo``).

    Returns:
        The filter, whose :meth:`LibraryLogFilter.flush` reports what is still suppressed.

    Raises:
        ValueError: ``level`` is not a logging level name.
    """
    global _installed  # noqa: PLW0603  # one handler per process, replaced on reconfiguring
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    zone, problem = _zone(timezone)
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(SiteTimeFormatter(_FORMAT, tz=zone, syslog_prefix=_is_journal(out)))
    if not announcements:
        handler.addFilter(lambda record: not hasattr(record, "priority"))
    library_filter = LibraryLogFilter(handler.handle, keep_detail=numeric <= logging.DEBUG)
    handler.addFilter(library_filter)
    root.addHandler(handler)
    _installed = handler
    root.setLevel(numeric)
    # pymodbus logs every retry at its own levels; our drivers report device health instead.
    logging.getLogger("pymodbus").setLevel(max(logging.WARNING, numeric))
    if problem is not None:
        logging.getLogger(__name__).warning("%s; log times are UTC", problem)
    return library_filter


def priority_level(priority: str) -> int:
    """The level of the line announcing an alarm or a work order of ``priority``: CRITICAL
    for P0 (life safety), ERROR for P1, WARNING for P2, P3 and anything else."""
    return _PRIORITY_LEVELS.get(priority, logging.WARNING)


class SiteTimeFormatter(logging.Formatter):
    """Stamps records in one time zone with its offset: ``2026-12-05 22:40:01,123+0800``.

    Args:
        fmt: The line format (``%(asctime)s`` is the stamp).
        tz: The zone; None for the host's local time.
        syslog_prefix: Start each record with its syslog severity (``<2>`` for CRITICAL), for
            the journal.
    """

    def __init__(self, fmt: str | None = None, *, tz: dt.tzinfo | None = None,
                 syslog_prefix: bool = False) -> None:
        super().__init__(fmt)
        self.tz = tz
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.syslog_prefix:
            return text
        severity = next((s for level, s in _SYSLOG if record.levelno >= level), 7)
        return f"<{severity}>{text}"

    def formatTime(self, record: logging.LogRecord,
                   datefmt: str | None = None) -> str:
        moment = dt.datetime.fromtimestamp(record.created, tz=self.tz)
        if self.tz is None:
            moment = moment.astimezone()
        if datefmt:
            return moment.strftime(datefmt)
        return f"{moment:%Y-%m-%d %H:%M:%S},{int(record.msecs):03d}{moment:%z}"


def one_line(record: logging.LogRecord) -> None:
    """Rewrite ``record`` in place as one line, its exception reduced to type and message."""
    text = record.getMessage().split("\n", 1)[0].rstrip()
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None:
        text = f"{text} ({_describe(exc)})"
    record.msg, record.args = text, None
    record.exc_info = record.exc_text = record.stack_info = None


@dataclass
class _Window:
    start: float
    length: float
    name: str
    level: int
    suppressed: int = 0
    last: str = ""


class LogLimiter:
    """Lets one record per key and window through, counts the rest, and reports the count.

    Args:
        window: First window, seconds; the next one is twice as long while repeats keep
            being suppressed.
        max_window: Longest window.
        max_keys: Keys remembered; the oldest is forgotten beyond it.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(self, *, window: float = 60.0, max_window: float = 3600.0,
                 max_keys: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < window <= max_window:
            raise ValueError("need 0 < window <= max_window")
        self._base, self._max, self._max_keys = window, max_window, max_keys
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def admit(self, key: tuple[str, str],
              record: logging.LogRecord) -> tuple[bool, list[logging.LogRecord]]:
        """Whether ``record`` (filed under ``key``) is logged, and the summaries of every
        window that has passed with something suppressed, to be logged first."""
        summaries = self.due()
        current = self._windows.get(key)
        if current is not None:
            current.suppressed += 1
            current.last = record.getMessage()
            return False, summaries
        if len(self._windows) >= self._max_keys:
            del self._windows[next(iter(self._windows))]
        self._windows[key] = _Window(start=self._clock(), length=self._base, name=record.name,
                                     level=record.levelno)
        return True, summaries

    def due(self) -> list[logging.LogRecord]:
        """Summaries of the windows that have passed with something suppressed."""
        return self._close_windows(self._clock(), everything=False)

    def flush(self) -> list[logging.LogRecord]:
        """Summaries of every window that suppressed something, passed or not (at exit)."""
        return self._close_windows(self._clock(), everything=True)

    def _close_windows(self, now: float, *, everything: bool) -> list[logging.LogRecord]:
        out: list[logging.LogRecord] = []
        for key, w in list(self._windows.items()):
            if not everything and now < w.start + w.length:
                continue
            if not w.suppressed:
                del self._windows[key]  # quiet for a whole window: start afresh next time
                continue
            out.append(logging.LogRecord(
                w.name, w.level, __file__, 0,
                "%d similar message(s) suppressed in the last %.0f s, the last: %s",
                (w.suppressed, now - w.start, w.last), None))
            # Still noisy: a longer window from here, the next summary further away.
            self._windows[key] = _Window(start=now, length=min(2 * w.length, self._max),
                                         name=w.name, level=w.level)
        return out


class LibraryLogFilter(logging.Filter):
    """A handler filter applying the library policy of this module to library records.

    Args:
        emit: Where summary records ("N similar suppressed") go, normally the handler's
            ``handle``; they are marked so that this filter lets them through.
        keep_detail: Keep tracebacks and multi-line text (the gateway runs at DEBUG).
        limiter: The rate limiter; default one-minute windows growing to an hour.
    """

    def __init__(self, emit: Callable[[logging.LogRecord], object], *,
                 keep_detail: bool = False, limiter: LogLimiter | None = None) -> None:
        super().__init__()
        self._emit = emit
        self._keep_detail = keep_detail
        self._limiter = limiter or LogLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "propgw_summary", False):
            return True
        library = _library_of(record)
        if library is None:
            # Any line may carry the news that a library's noise has stopped.
            self._report(self._limiter.due())
            return True
        cap = _LEVEL_CAPS.get(library)
        if cap is not None and cap < record.levelno < logging.CRITICAL:
            record.levelno, record.levelname = cap, logging.getLevelName(cap)
        key = (record.name, _template(record))
        if not self._keep_detail and record.levelno < logging.CRITICAL:
            one_line(record)
        allowed, summaries = self._limiter.admit(key, record)
        self._report(summaries)
        return allowed

    def flush(self) -> None:
        """Report every count still suppressed (at exit)."""
        self._report(self._limiter.flush())

    def _report(self, summaries: list[logging.LogRecord]) -> None:
        for summary in summaries:
            summary.propgw_summary = True
            self._emit(summary)


def _is_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the systemd journal: ``$JOURNAL_STREAM`` is "device:inode" of it."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # io.StringIO has no descriptor; a closed stream neither
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def _zone(name: str | None) -> tuple[dt.tzinfo | None, str | None]:
    """The zone called ``name`` (None: local time), or UTC and why it could not be loaded."""
    if name is None:
        return None, None
    try:
        return ZoneInfo(name), None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    try:
        ZoneInfo("UTC")
    except ZoneInfoNotFoundError:
        return dt.UTC, (f"time zone {name!r} cannot be loaded: this system has no time-zone "
                        f"database (Debian: apt install tzdata)")
    return dt.UTC, f"unknown time zone {name!r} (expected an IANA name such as Asia/Shanghai)"


def _library_of(record: logging.LogRecord) -> str | None:
    """The library a record speaks for, or None when it is ours."""
    root = record.name.split(".", 1)[0]
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and _raised_in_our_code(exc.__traceback__):
        return None  # a bug of ours that asyncio (or a library) reports: keep it whole
    if root in OUR_LOGGERS:
        return None
    if exc is not None:
        origin = type(exc).__module__.split(".", 1)[0]
        if origin in _LEVEL_CAPS:
            return origin
    return root


def _raised_in_our_code(tb: TracebackType | None) -> bool:
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    module = str(last.tb_frame.f_globals.get("__name__", ""))
    return module.split(".", 1)[0] in OUR_LOGGERS


def _template(record: logging.LogRecord) -> str:
    """The record's first line with its numbers masked: libraries format their messages
    before logging as often as they pass a template (pymodbus always does)."""
    return _NUMBERS.sub("#", record.getMessage().split("\n", 1)[0])[:200]


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    text = " ".join(line.strip() for line in lines[-1:]).strip() or type(exc).__name__
    return text[:300]
