"""``propgw watch``: live values from the real drivers, as a real subprocess.

A change is driven through the simulator's control API and must show up as one new line when
the output is a pipe; on a terminal (a pty here) the table is redrawn in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import sys
from pathlib import Path

import pytest

from gateway.commission import EXIT_OK, EXIT_USAGE
from tests.commission_support import REPO, control, propgw, sim_device, write_site
from tests.support import free_port, kill_if_running, stop_and_read


def _elevator_site(tmp_path: Path, port: int) -> Path:
    return write_site(tmp_path / "site.yaml",
                      f"  - {{id: E1, driver: modbus-tcp, host: 127.0.0.1, port: {port}, "
                      "profile: elevator-modbus, poll_interval: 0.2s, "
                      "derived: [{name: in_inspection, expr: 'service_mode == 2'}]}\n"
                      f"  - {{id: E2, driver: modbus-tcp, host: 127.0.0.1, port: {port}, "
                      "unit: 9, profile: elevator-modbus, enabled: false}\n")


@pytest.mark.slow
async def test_watch_prints_one_line_per_change_when_piped(tmp_path: Path) -> None:
    port = free_port()
    site = _elevator_site(tmp_path, port)
    async with sim_device("elevator", "--port", str(port), "--option", "traffic=false",
                          control_port=free_port()) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "watch", "-c", str(site), "E1", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        lines: list[str] = []

        async def until(text: str) -> None:
            assert proc.stdout is not None
            async with asyncio.timeout(15):
                while not lines or text not in lines[-1]:
                    line = (await proc.stdout.readline()).decode()
                    assert line, f"watch ended early: {lines}"
                    lines.append(line)

        try:
            await until("E1.service_mode = 1")
            await until("E1.run_count = ")  # the first cycle is complete (last point)
            await control(sim.control_port, "E1", "mode", mode="inspection")
            await until("E1.service_mode = 2")
            await until("E1.in_inspection = true")  # derived as the gateway derives it
            _, err = await stop_and_read(proc, signal.SIGINT)
        finally:
            await kill_if_running(proc)
    assert proc.returncode == EXIT_OK, err
    assert err == b"", "Ctrl-C ends cleanly: no traceback, no log noise"
    # Lines are "HH:MM:SS.mmm device.point = value [unit]".
    points = [line.split()[1] for line in lines]
    assert points.count("E1.service_mode") == 2, lines
    assert points.count("E1.in_inspection") == 2, lines
    assert points.count("E1.up_limit") == 1, "an unchanged value is not printed again"
    assert not any(p.startswith("E2.") for p in points), "only the device asked for"
    assert any(line.endswith(" E1.car_position = 1 floor\n") for line in lines), lines


async def test_watch_ends_by_itself_after_duration_and_reports_comm_loss(
        tmp_path: Path) -> None:
    site = _elevator_site(tmp_path, free_port())  # nothing listens
    ran = await propgw("watch", "-c", str(site), "--duration", "1.5")
    assert ran.rc == EXIT_OK, ran
    assert "E1.car_status = comm-loss: modbus[127.0.0.1:" in ran.out
    assert "E2." not in ran.out, "a disabled device is watched only when named"


async def test_watch_unknown_device_lists_the_devices(tmp_path: Path) -> None:
    site = _elevator_site(tmp_path, free_port())
    ran = await propgw("watch", "-c", str(site), "E3")
    assert ran.rc == EXIT_USAGE
    assert ran.err.startswith("propgw watch: no device 'E3' (did you mean 'E")
    assert ran.err.endswith("; devices: E1 [modbus-tcp], E2 [modbus-tcp] (disabled)\n")


@pytest.mark.slow
async def test_watch_on_a_terminal_redraws_a_table(tmp_path: Path) -> None:
    port = free_port()
    site = _elevator_site(tmp_path, port)
    master, slave = pty.openpty()
    fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
    output = bytearray()
    try:
        async with sim_device("elevator", "--port", str(port), "--option", "traffic=false",
                              control_port=free_port()):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "watch", "-c", str(site), "E1", "E2",
                "--duration", "2", cwd=REPO, stdout=slave, stderr=asyncio.subprocess.PIPE)
            async with asyncio.timeout(20):
                while proc.returncode is None:
                    with contextlib.suppress(BlockingIOError, OSError):
                        output += os.read(master, 65536)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.05):
                            await proc.wait()
            with contextlib.suppress(BlockingIOError, OSError):
                output += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == EXIT_OK
    text = output.decode()
    frames = text.split("\x1b[H\x1b[2J")
    assert len(frames) >= 2, "the table is drawn in place"
    last = frames[-1].replace("\r\n", "\n").splitlines()
    assert last[0].startswith("propgw watch test-site ")
    assert last[2].split() == ["DEVICE", "POINT", "VALUE", "CHANGED"]
    rows = {tuple(line.split()[:2]): line for line in last[3:]}
    assert rows[("E1", "car_position")].split()[2:4] == ["1", "floor"]
    # E2 was named, so it is watched although disabled; unit 9 does not answer.
    assert "comm-loss" in rows[("E2", "car_status")]
