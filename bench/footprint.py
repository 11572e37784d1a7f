"""Idle footprint of ``propgw run``: RSS and CPU, without the console, with it, and with one
browser showing the alarm board.

The site is config/examples/two-elevators.yaml: two simulated Modbus elevators polled at 1 Hz,
the upstream on a local mosquitto, a state folder (outbox, journal, work-order history and, with
the console, users on disk). After ``--warmup`` seconds, the gateway's VmRSS is read and its CPU
(utime + stime from /proc/<pid>/stat) is counted over ``--seconds``. The browser is Debian's
chromium driven by Playwright (as the console tests do), logged in and left on the board with
its live feed open; its own CPU is not counted.

    .venv/bin/python bench/footprint.py [--seconds 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-1"

from procstats import cpu_seconds, free_port, process, rss_mb  # noqa: E402


def site_config(folder: Path, console_port: int | None) -> Path:
    base = (REPO / "config/examples/two-elevators.yaml").read_text(encoding="utf-8")
    extra = f"state_dir: {folder / 'state'}\n"
    if console_port is not None:
        extra += f"console: {{port: {console_port}}}\n"
    path = folder / "site.yaml"
    path.write_text(base + "\n" + extra, encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def browser_on_board(url: str) -> AsyncIterator[None]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (scripts/setup.sh --test installs it)")
    async with async_playwright() as pw:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = await pw.chromium.launch(executable_path=chromium, args=args)
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.request.post(f"{url}/api/v1/session",
                                    data={"name": "bench", "password": PASSWORD})
            await page.goto(url)  # the board, with its live feed
            # The page marks the live feed connected once its EventSource is open.
            await page.wait_for_selector("#live.live-live", timeout=10_000)
            yield
        finally:
            await browser.close()


async def measure(label: str, *, console: bool, browser: bool, seconds: float,
                  warmup: float) -> tuple[str, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mqtt, e1, e2 = free_port(), free_port(), free_port()
        console_port = free_port() if console else None
        config = site_config(folder, console_port)
        if console:
            from gateway.config import load_config
            from gateway.console import UserStore, users_path

            users = users_path(load_config(config, env={**os.environ}))
            assert users is not None
            with UserStore(users) as store:
                store.add("bench", "viewer", PASSWORD)
        env = {**os.environ, "PROPGW_MQTT_PORT": str(mqtt), "PROPGW_UPSTREAM_PORT": str(mqtt),
               "PROPGW_E1_PORT": str(e1), "PROPGW_E2_PORT": str(e2)}
        propgw = str(Path(sys.executable).parent / "propgw")
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with process(mosquitto, "-p", str(mqtt), cwd=REPO), \
                process(propgw, "sim", "device", "elevator", "--id", "E1", "--port", str(e1),
                        cwd=REPO), \
                process(propgw, "sim", "device", "elevator", "--id", "E2", "--port", str(e2),
                        cwd=REPO):
            await asyncio.sleep(1.0)
            with process(propgw, "run", "-c", str(config), cwd=REPO, env=env) as gw:
                async with contextlib.AsyncExitStack() as stack:
                    if browser:
                        await asyncio.sleep(2.0)
                        await stack.enter_async_context(
                            browser_on_board(f"http://127.0.0.1:{console_port}"))
                    await asyncio.sleep(warmup)
                    before = cpu_seconds(gw.pid)
                    await asyncio.sleep(seconds)
                    used = cpu_seconds(gw.pid) - before
                    return label, rss_mb(gw.pid), 100.0 * used / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    rows = []
    for label, console, browser in [("no console", False, False),
                                    ("console on, no browser", True, False),
                                    ("console on, one browser on the board", True, True)]:
        print(f"measuring: {label} ...", file=sys.stderr)
        rows.append(await measure(label, console=console, browser=browser,
                                  seconds=args.seconds, warmup=args.warmup))
    print(f"\n| propgw run (two elevators, 1 Hz) | VmRSS MB | CPU % (over {args.seconds:g} s) |")
    print("| --- | --- | --- |")
    for label, rss, cpu in rows:
        print(f"| {label} | {rss:.1f} | {cpu:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
