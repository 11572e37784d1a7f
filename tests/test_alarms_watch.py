"""``propgw alarms watch`` for real: the board in a real terminal (tmux) next to a real
gateway, its line mode through a pipe, and its reconnection across a gateway restart."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.console import UserStore, users_path
from gateway.terminal import ApiClient, Connection, display_width, watch
from tests.console_support import SITE, STATUS_TOKEN, Running, add_users, running_console
from tests.support import Mosquitto, free_port, kill_if_running
from tests.tmux_support import propgw_command, tmux_pane

pytestmark = pytest.mark.mosquitto


@dataclass
class Site:
    run: Running
    token_file: Path
    token: str
    tmp: Path


@pytest.fixture
async def site(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Site]:
    file = tmp_path / "site.yaml"
    file.write_text(SITE.format(state=tmp_path / "state", port=mosquitto.port,
                                token=STATUS_TOKEN), encoding="utf-8")
    config = load_config(file)
    add_users(config)
    with UserStore(users_path(config) or Path()) as store:
        token = store.issue_token("li", "watch")  # a viewer may watch
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    async with running_console(config, mosquitto.port) as run:
        yield Site(run, token_file, token, tmp_path)


def column_of(line: str, cell: str) -> int:
    """The terminal column where the cell ``cell`` (a whole word) starts in ``line``."""
    match = re.search(rf"(?<!\S){re.escape(cell)}(?!\S)", line)
    assert match is not None, (cell, line)
    return display_width(line[:match.start()])


def countdown(screen: str) -> str:
    """The countdown (MM:SS) in the row of trapped@E1."""
    row = next(line for line in screen.splitlines() if "trapped@E1" in line)
    found = re.search(r"(?<!\S)(\d\d:\d\d)(?!\S)", row)
    assert found is not None, row
    return found.group(1)


async def test_the_board_in_a_terminal_at_80_columns(site: Site) -> None:
    command = propgw_command("alarms", "watch", "--url", site.run.base, "--token-file",
                             str(site.token_file))
    async with tmux_pane(command, cwd=site.tmp, width=80, height=24) as pane:
        screen = await pane.wait_for("当前无报警", within=15)
        assert "● 实时" in screen and "按 q 或 Ctrl-C 退出" in screen

        loop = asyncio.get_running_loop()
        raised = loop.time()
        await site.run.publish("dev/E1/trapped", "1")
        screen = await pane.wait_for("trapped@E1", within=3)
        assert loop.time() - raised < 2.0, "on the board within a second or two"
        lines = screen.splitlines()
        row = next(i for i, line in enumerate(lines) if "trapped@E1" in line)
        header = lines[row - 1]
        assert re.match(r"P0\s+未确认\s+\d\d:\d\d:\d\d\s+\d+s\s+0[0-4]:[0-5]\d\s+L1/4 中控室\s+"
                        r"trapped@E1$", lines[row].rstrip()), lines[row]
        assert lines[row + 1].strip() == "1号楼 3层 东区 · 1号梯 · 电梯困人", \
            "80 columns: where and what on a second line"
        for title, cell in (("状态", "未确认"), ("升级", "L1/4"), ("报警编号", "trapped@E1")):
            assert column_of(header, title) == column_of(lines[row], cell), \
                f"{title}: aligned by display width (Chinese takes two columns)"
        value = countdown(screen)
        assert column_of(lines[row], value) + len(value) == \
            column_of(header, "到场倒计时") + display_width("到场倒计时"), "right-aligned"
        assert "报警 1 条 · P0 1 · 未确认 1" in screen

        first = countdown(screen)
        later = countdown(await pane.wait_for(lambda s: "trapped@E1" in s
                                              and countdown(s) != first, within=3))
        assert later < first, "the countdown runs without any event"

        operator = await site.run.client()
        await operator.login("wang")
        assert (await operator.post("/api/v1/alarms/trapped@E1/acknowledge", {}))[0] == 200
        await pane.wait_for(lambda s: re.search(r"P0\s+已确认", s) is not None, within=3)

        await pane.keys("C-c")
        assert await pane.exit_status() == 0
        screen = await pane.screen()
        assert "trapped@E1" not in screen, "the shell's screen is back"


async def test_english_on_a_wide_terminal_and_q_quits(site: Site) -> None:
    await site.run.publish("dev/W1/wet", "1")
    command = propgw_command("alarms", "watch", "--url", site.run.base, "--lang", "en")
    async with tmux_pane(command, cwd=site.tmp, width=160, height=12,
                         env={"PROPGW_TOKEN": site.token}) as pane:
        screen = await pane.wait_for("leak@W1", within=15)
        row = next(line for line in screen.splitlines() if "leak@W1" in line)
        assert re.search(r"P1\s+UNACK\s+.*leak@W1\s+Bldg 2\s+水泵房\s+water leak$",
                         row.rstrip()), f"one line per alarm: {row}"
        assert "● live" in screen and "q or Ctrl-C: quit" in screen
        await pane.keys("q")
        assert await pane.exit_status() == 0


async def test_a_refused_token_is_explained(site: Site) -> None:
    command = propgw_command("alarms", "watch", "--url", site.run.base, "--token",
                             "pgw_" + "x" * 43)
    async with tmux_pane(command, cwd=site.tmp) as pane:
        assert await pane.exit_status(within=15) == 1
        assert "the gateway does not accept this API token" in await pane.screen()


async def test_line_mode_through_a_pipe(site: Site) -> None:
    env = {**os.environ, "PROPGW_TOKEN": site.token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "alarms", "watch", "--url", site.run.base,
        "--lang", "en", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env)
    assert proc.stdout is not None
    lines: list[str] = []

    async def until(pattern: str, within: float) -> str:
        """The first line (read already or still to come) matching ``pattern``."""
        for line in lines:
            if re.search(pattern, line):
                return line
        async with asyncio.timeout(within):
            while True:
                raw = await proc.stdout.readline()  # type: ignore[union-attr]
                assert raw, f"watch ended early: {lines}"
                lines.append(raw.decode().rstrip("\n"))
                if re.search(pattern, lines[-1]):
                    return lines[-1]

    try:
        await until(r"board: 0 alarm\(s\)$", within=15)
        raised = asyncio.get_running_loop().time()
        await site.run.publish("dev/E1/trapped", "1")
        line = await until(r" alarm P0 trapped@E1 activated ", within=3)
        assert asyncio.get_running_loop().time() - raised < 2.0
        assert re.fullmatch(r"\S+\+08:00 alarm P0 trapped@E1 activated UNACK by system \| Bldg "
                            r"1, floor 3, zone East \| 1号梯 \| passenger trapped", line), \
            line
        order = await until(r" work_order P0 ", within=3)
        assert "open raised alarm trapped@E1 L1/4 Control room respond_by" in order
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        await kill_if_running(proc)
    assert all("\x1b" not in line for line in lines), "no terminal codes in a pipe"


@pytest.mark.slow
async def test_line_mode_carries_on_across_a_gateway_restart(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    file = tmp_path / "site.yaml"
    port = free_port()
    file.write_text(SITE.format(state=tmp_path / "state", port=mosquitto.port,
                                token=STATUS_TOKEN).replace("console: {port: 0}",
                                                            f"console: {{port: {port}}}"),
                    encoding="utf-8")
    config = load_config(file)
    add_users(config)
    with UserStore(users_path(config) or Path()) as store:
        token = store.issue_token("li")
    out = io.StringIO()
    stop = asyncio.Event()

    async def seen(text: str, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while text not in out.getvalue():
                await asyncio.sleep(0.02)

    conn = Connection(url=f"http://127.0.0.1:{port}", token=token, timeout=5.0)
    async with ApiClient(conn) as client:
        async with running_console(config, mosquitto.port) as run:
            task = asyncio.create_task(watch(client, lang="zh", out=out, lines=True, stop=stop))
            await seen("board: 报警 0 条")
            await run.publish("dev/E1/trapped", "1")
            await seen("trapped@E1 activated")
        await seen("live feed lost: ")
        async with running_console(config, mosquitto.port):
            await seen("resync: ", within=10)
            await seen("present 未确认")
            stop.set()
            assert await task == 0
    text = out.getvalue()
    assert text.count("connected to ") >= 2 and text.count("live feed lost") == 1, text
    assert re.search(r"alarm P0 trapped@E1 present 未确认 \| 1号楼 3层 东区", text), \
        "the board after the restart, restored from the journal"


class Relay:
    """A TCP relay to the gateway that can drop every connection at once: a network blip."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_line_mode_loses_nothing_across_a_network_blip(site: Site) -> None:
    relay = Relay(int(site.run.base.rsplit(":", 1)[1]))
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    out = io.StringIO()
    stop = asyncio.Event()

    async def seen(text: str, within: float = 5.0) -> None:
        try:
            async with asyncio.timeout(within):
                while text not in out.getvalue():
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"{text!r} not within {within} s in:\n{out.getvalue()}") \
                from None

    try:
        conn = Connection(url=f"http://127.0.0.1:{relay.port}", token=site.token)
        async with ApiClient(conn) as client:
            task = asyncio.create_task(watch(client, lang="en", out=out, lines=True, stop=stop))
            try:
                await seen("board: 0 alarm(s)")
                await site.run.publish("dev/W1/wet", "1")  # an event: a place to resume from
                await seen("alarm P1 leak@W1 activated")
                relay.cut()
                await seen("live feed lost")
                await site.run.publish("dev/E1/trapped", "1")  # while the watch is away
                await seen("alarm P0 trapped@E1 activated")
            finally:
                stop.set()
                assert await task == 0
    finally:
        server.close()
        await relay.close()
        await server.wait_closed()
    text = out.getvalue()
    assert text.count("connected to ") == 2, text
    assert "resync" not in text and text.count("board:") == 1, \
        "resumed after the last event seen, not started over"

