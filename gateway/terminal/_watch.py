"""``propgw alarms watch``: the live alarm board in a terminal (an SSH session in the control
room or on a phone), or one line per event when the output is a pipe or a file.

Decisions:

* **Plain ANSI, no curses**: the board is redrawn whole (cursor home, each line cleared to its
  end, the rest of the screen cleared) on the terminal's alternate screen, which every terminal
  emulator and tmux/screen understand; nothing to install, and the shell's screen comes back as
  it was on exit. Keys are read in cbreak mode (no echo, Ctrl-C still a signal).
* **Never a stale board that looks live**: the feed is subscribed *before* the board is read,
  and every event re-reads the board (reads coalesce: events arriving during one read cause
  exactly one more), so no change can fall between the two. A broken feed is shown at once in
  reverse video, and retried every 1-5 s; ``resync`` (the gateway's "you missed too much")
  re-reads too.
* **Countdowns tick on the second** from the absolute ``respond_by`` times, redrawn every
  second; a wall clock far off on this machine shows off countdowns, not wrong states.
* **Line mode** reconnects with ``Last-Event-ID``, so a blip loses no line; it prints the board
  once at the start and after a ``resync``.
* Writing to the terminal blocks the loop for the few microseconds a frame takes; this process
  does nothing else, and a terminal that stops reading has nobody left to show the board to.

Exit status: 0 after q or Ctrl-C (or SIGTERM); 1 when the gateway refuses the token or role, or
is not there at the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from gateway.terminal._board import (
    Lang,
    Style,
    board_lines,
    display_width,
    event_line,
    fit,
    label,
    summary_line,
    terminal_size,
    terminal_style,
    title_line,
)
from gateway.terminal._client import ApiClient, ApiError, SseEvent, site_zone

__all__ = ["watch"]

EXIT_OK, EXIT_FAILED = 0, 1
_RETRY_MAX = 5.0
_ENTER = "\x1b[?1049h\x1b[?25l\x1b[2J"  # alternate screen, hide the cursor, clear
_LEAVE = "\x1b[?25h\x1b[?1049l"
_STATUS = {"live": ("● 实时", "● live"), "connecting": ("连接中…", "connecting…"),
           "lost": ("⚠ 连接中断", "⚠ link lost")}


async def watch(client: ApiClient, *, lang: Lang, out: TextIO, lines: bool,
                stop: asyncio.Event | None = None) -> int:
    """Show the board live until ``stop`` is set (default: q, Ctrl-C or SIGTERM).

    Args:
        client: An open API client.
        lang: Language of labels and messages.
        out: The terminal (board mode) or the pipe (line mode).
        lines: One line per event instead of a redrawn board.
        stop: Set to end; None: this function installs the signal handlers itself.

    Raises:
        ApiError: the gateway refused the token or role, or did not answer at the start.
    """
    site, tz = await site_zone(client)
    loop = asyncio.get_running_loop()
    own_stop = stop is None
    stop = stop or asyncio.Event()
    if own_stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        view: _Watch = _Lines(client, site, tz, lang, out, stop) if lines else \
            _Board(client, site, tz, lang, out, stop)
        return await view.run()
    finally:
        if own_stop:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


class _Watch:
    """The feed loop both modes share; subclasses say what to do with what arrives."""

    def __init__(  # noqa: PLR0917  # private; built in one place, in order
            self, client: ApiClient, site: dict[str, Any], tz: ZoneInfo, lang: Lang,
            out: TextIO, stop: asyncio.Event) -> None:
        self.client, self.site, self.tz, self.lang = client, site, tz, lang
        self.out, self.stop = out, stop
        self.link = "connecting"
        self.problem = ""
        self._retry = 0.0

    async def run(self) -> int:
        task = asyncio.current_task()
        assert task is not None
        before = task.cancelling()
        status = EXIT_OK
        try:
            async with asyncio.TaskGroup() as group:
                children = [group.create_task(coro, name=f"watch.{name}")
                            for name, coro in self.tasks()]
                await self.stop.wait()
                for child in children:
                    child.cancel()
        except* ApiError as failed:
            self.failed(str(failed.exceptions[0]))
            status = EXIT_FAILED
        finally:
            # Python 3.11: a group aborted by a child leaves this task "cancelling".
            while task.cancelling() > before:
                task.uncancel()
        return status

    def tasks(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [("feed", self._feed())]

    async def _feed(self) -> None:
        last_id: str | None = None
        while True:
            resync = False
            try:
                async for event in self.client.events(last_id, opened=self._opened(last_id)):
                    if event.kind == "resync":
                        resync, last_id = True, None
                        self.resynced(event)
                    else:
                        last_id = event.id or last_id
                        self.event(event)
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise
                self.lost(str(exc))
            else:
                if not resync:
                    self.lost("the gateway closed the live feed")
            if resync:
                continue
            self._retry = min(_RETRY_MAX, max(1.0, self._retry * 2))
            await asyncio.sleep(self._retry)

    def _opened(self, last_id: str | None) -> Callable[[], None]:
        def opened() -> None:
            self.link, self.problem, self._retry = "live", "", 0.0
            self.connected(fresh=last_id is None)
        return opened

    # -- what subclasses do

    def connected(self, *, fresh: bool) -> None:
        """The feed is open (``fresh``: from now, not resuming after ``Last-Event-ID``)."""

    def event(self, event: SseEvent) -> None:
        """An alarm or work-order event."""

    def resynced(self, event: SseEvent) -> None:
        """The gateway says: re-read everything."""

    def lost(self, reason: str) -> None:
        self.link, self.problem = "lost", reason

    def failed(self, message: str) -> None:
        print(f"propgw alarms watch: {message}", file=sys.stderr)


class _Lines(_Watch):
    """One line per event, flushed at once (pipes, files, logs)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._want_snapshot = asyncio.Event()

    def tasks(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [*super().tasks(), ("snapshots", self._snapshots())]

    def connected(self, *, fresh: bool) -> None:
        self._emit(f"connected to {self.client.conn.url}")
        if fresh:
            self._want_snapshot.set()

    def event(self, event: SseEvent) -> None:
        try:
            data = event.json()
        except ValueError:
            data = None
        self._emit(event_line(event.kind, data, tz=self.tz, now=time.time(), lang=self.lang),
                   stamp=False)

    def resynced(self, event: SseEvent) -> None:
        self._emit("resync: the gateway says events were missed; the board follows")

    def lost(self, reason: str) -> None:
        if self.link != "lost":
            self._emit(f"live feed lost: {reason}; retrying")
        super().lost(reason)

    async def _snapshots(self) -> None:
        while True:
            await self._want_snapshot.wait()
            self._want_snapshot.clear()
            board = await self._read_board()
            if board is None:
                continue
            now = time.time()
            self._emit(f"board: {summary_line(board, self.lang)}")
            for alarm in board.get("alarms", []):
                self._emit(event_line("alarm", {"alarm_id": alarm.get("alarm_id"),
                                                "transition": "present", "alarm": alarm},
                                      tz=self.tz, now=now, lang=self.lang), stamp=False)

    async def _read_board(self) -> dict[str, Any] | None:
        try:
            board: dict[str, Any] = await self.client.get("/api/v1/alarms")
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            self._emit(f"cannot read the board: {exc}")
            return None
        return board

    def _emit(self, text: str, *, stamp: bool = True) -> None:
        if stamp:
            when = dt.datetime.now(tz=self.tz).isoformat(timespec="seconds")
            text = f"{when} {text}"
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:
            # `watch | head`: the reader is gone; stop quietly, and keep Python's exit flush
            # from complaining about the same pipe.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            self.stop.set()


class _Board(_Watch):
    """The board, redrawn on every change and every second."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.board: dict[str, Any] | None = None
        #: Why the board could not be read last time ("" when it could).
        self.unread = ""
        self._failure = ""
        self.dirty = asyncio.Event()
        self.style: Style = terminal_style(self.out)

    async def run(self) -> int:
        with self._screen():
            status = await super().run()
        if self._failure:  # said on the shell's screen, not on the board's that just went
            super().failed(self._failure)
        return status

    def failed(self, message: str) -> None:
        self._failure = message

    def tasks(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        return [*super().tasks(), ("board", self._refresh()), ("clock", self._tick())]

    def connected(self, *, fresh: bool) -> None:
        self.dirty.set()
        self.draw()

    def event(self, event: SseEvent) -> None:
        self.dirty.set()

    def resynced(self, event: SseEvent) -> None:
        self.dirty.set()

    def lost(self, reason: str) -> None:
        super().lost(reason)
        self.draw()

    async def _refresh(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                self.board = await self.client.get("/api/v1/alarms")
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise
                self.unread = str(exc)
                self.draw()
                await asyncio.sleep(1.0)
                self.dirty.set()
                continue
            self.unread = ""
            self.draw()

    async def _tick(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(1.0 - time.time() % 1.0 + 0.005)

    def draw(self, *, clear: bool = False) -> None:
        size = terminal_size(self.out)
        frame = self.frame(max(20, size.columns), max(5, size.lines))
        text = ("\x1b[2J" if clear else "") + "\x1b[H" + "\x1b[K\n".join(frame) + "\x1b[K\x1b[J"
        with contextlib.suppress(OSError):
            self.out.write(text)
            self.out.flush()

    def frame(self, width: int, height: int) -> list[str]:
        """The whole screen: title and link state, summary, board, footer."""
        now = time.time()
        status = _STATUS[self.link][0 if self.lang == "zh" else 1]
        room = width - display_width(status) - 1
        title = fit(title_line(self.site, self.tz, now), room) + " " + status
        lines = [self.style.paint(self.style.header, title)]
        if self.link != "live" or self.unread:
            why = self.problem or self.unread or self.client.conn.url
            warn = ("连接中断，画面可能已过时，正在重连：" if self.lang == "zh"
                    else "no live link; the board may be out of date; retrying: ") + why
            lines.append(self.style.paint(self.style.banner, fit(warn, width)))
        elif self.board is not None:
            lines.append(fit(summary_line(self.board, self.lang), width).rstrip())
        lines.append("")
        if self.board is not None:
            lines += board_lines(self.board, tz=self.tz, now=now, lang=self.lang, width=width,
                                 height=height - len(lines) - 1, style=self.style)
        lines = lines[:height - 1]
        lines += [""] * (height - 1 - len(lines))
        footer = f"{label('quit', self.lang)} · {self.client.conn.url}"
        return [*lines, fit(footer, width).rstrip()]

    def _keys(self) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 64)
        except OSError:
            return
        if not data or data.lower().startswith(b"q"):
            self.stop.set()
        elif b"\x0c" in data:  # Ctrl-L
            self.draw(clear=True)

    @contextlib.contextmanager
    def _screen(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        saved = termios.tcgetattr(fd) if fd is not None else None
        self.out.write(_ENTER)
        self.out.flush()
        try:
            if fd is not None:
                tty.setcbreak(fd, termios.TCSANOW)
                loop.add_reader(fd, self._keys)
            loop.add_signal_handler(signal.SIGWINCH, lambda: self.draw(clear=True))
            yield
        finally:
            loop.remove_signal_handler(signal.SIGWINCH)
            if fd is not None and saved is not None:
                loop.remove_reader(fd)
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            with contextlib.suppress(OSError):
                self.out.write(_LEAVE)
                self.out.flush()
