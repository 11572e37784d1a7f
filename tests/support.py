"""Test helpers that talk to real things: free loopback ports, a real mosquitto process."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.site import free_port

__all__ = ["Mosquitto", "TlsFiles", "free_port", "kill_if_running", "make_tls_files",
           "stop_and_read", "tls_listener_conf", "wait_port"]


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on 127.0.0.1:{port}") from None
            time.sleep(0.02)


def end_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Terminate a server started by a fixture; kill it if it has not ended after ``grace``."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def stop_and_read(proc: asyncio.subprocess.Process,
                        sig: signal.Signals = signal.SIGTERM) -> tuple[bytes, bytes]:
    """Send a child ``sig`` and read the rest of its output (stdout, stderr) until it exits,
    within 10 s."""
    proc.send_signal(sig)
    async with asyncio.timeout(10):
        return await proc.communicate()


async def kill_if_running(proc: asyncio.subprocess.Process) -> None:
    """Kill and reap a child the test has not stopped (it failed before it could)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


class Mosquitto:
    """A real mosquitto broker on a loopback port; can be stopped and started again."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "", *,
                 persistent: bool = False) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed; run scripts/test.sh, which "
                               "installs it")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"
        # Started as root, mosquitto drops to the user "mosquitto", which cannot write into
        # pytest's private temporary folders; run it as whoever runs the tests instead.
        user = "" if "user " in extra_conf else f"user {getpass.getuser()}\n"
        # persistent: sessions and queued messages are saved on every change, so that a
        # persistent subscriber (the platform) keeps its session even across a SIGKILL.
        persistence = (f"persistence true\npersistence_location {workdir}/\n"
                       "autosave_interval 1\nautosave_on_changes true\n" if persistent
                       else "persistence false\n")
        self.conf.write_text(
            user
            + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            + persistence
            + f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + extra_conf
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else "(no log)"
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{log}") from None

    def kill(self) -> None:
        """SIGKILL: the broker dies mid-stream, saving nothing."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait(5)
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            end_process(self._proc, grace=5)
        self._proc = None

    @contextlib.contextmanager
    def running(self) -> Iterator[Mosquitto]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away CA, a server certificate and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A second CA that signed nothing here: trusting it must make the handshake fail.
    other_ca: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Write trustme certificates: the server's is valid for 127.0.0.1 and localhost."""
    import trustme

    ca = trustme.CA()
    files = TlsFiles(ca=directory / "ca.pem", server_cert=directory / "server.pem",
                     server_key=directory / "server.key", client_cert=directory / "client.pem",
                     client_key=directory / "client.key", other_ca=directory / "other-ca.pem")
    ca.cert_pem.write_to_path(files.ca)
    trustme.CA().cert_pem.write_to_path(files.other_ca)
    for cert, cert_path, key_path in (
        (ca.issue_cert("127.0.0.1", "localhost"), files.server_cert, files.server_key),
        (ca.issue_cert("propgw-test-client@example.com", common_name="propgw-test-client"),
         files.client_cert, files.client_key),
    ):
        cert.private_key_pem.write_to_path(key_path)
        for i, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(cert_path, append=i > 0)
    return files


def tls_listener_conf(port: int, files: TlsFiles, *, require_certificate: bool = True) -> str:
    """mosquitto.conf lines for an extra TLS listener (pass as ``Mosquitto(extra_conf=...)``).

    With ``require_certificate`` the broker accepts only clients whose certificate the CA
    signed. Started as root, mosquitto switches to the user ``mosquitto`` before it loads
    certificates, and that user cannot read pytest's private temporary directories: ``user``
    keeps it as whoever runs the tests (a no-op when that is not root).
    """
    return (f"user {getpass.getuser()}\n"
            f"listener {port} 127.0.0.1\n"
            f"cafile {files.ca}\n"
            f"certfile {files.server_cert}\n"
            f"keyfile {files.server_key}\n"
            f"require_certificate {'true' if require_certificate else 'false'}\n")
