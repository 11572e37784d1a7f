"""A real Prometheus server (Debian's ``prometheus`` package) for the /metrics tests.

Started on a free loopback port with a throw-away storage folder and a generated
``prometheus.yml`` that scrapes one target every second; always stopped by its context manager.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import end_process, free_port

__all__ = ["Prometheus"]


class Prometheus:
    """One Prometheus process scraping ``127.0.0.1:<target_port>/metrics`` every second.

    Args:
        workdir: Holds the config, the TSDB and the log.
        target_port: The gateway's /metrics port.
        token: Sent as a bearer token (from a file, as a production setup would).
    """

    def __init__(self, workdir: Path, target_port: int, *, token: str | None = None) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed; scripts/setup.sh --test installs "
                               "Debian's package")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        auth = ""
        if token is not None:
            (workdir / "token").write_text(token)
            auth = f"    authorization: {{credentials_file: {workdir / 'token'}}}\n"
        self.config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: propgw\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n" + auth)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Prometheus]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def start(self) -> None:
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start on port {self.port}:\n"
                                   f"{self.log.read_text(errors='replace')}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            end_process(self._proc)
        self._proc = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now (blocking; call via to_thread)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as response:
            active: list[dict[str, Any]] = json.load(response)["data"]["activeTargets"]
        return active

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
