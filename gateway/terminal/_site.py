"""The site config as the terminal commands need it: where the users live, where the console
listens.

These commands run in an administrator's shell, not under systemd, so two things differ from
the gateway's own start:

* **Secrets in ``${NAME}`` references** (the platform's password, the status API's token) are
  usually only in the service's environment file. The terminal commands never use them, so a
  reference that is not set is filled with a placeholder instead of refusing the file; every
  other mistake in the file is still an error.
* **``$STATE_DIRECTORY``** (systemd's ``StateDirectory=``) is not set in a shell, so a config
  that relies on it for its state folder needs ``state_dir`` written in the file.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError

__all__ = ["SiteProblem", "console_url", "load_site"]

#: Stands in for a secret the terminal commands do not need; long enough for any token rule.
_PLACEHOLDER = "unset-in-this-shell-not-needed-by-this-command"
_UNSET = "environment variable "


class SiteProblem(Exception):
    """The site config cannot answer what the command needs; the message says what to set."""


def load_site(path: Path) -> GatewayConfig:
    """Load the site config like the gateway does, without the secrets it keeps in its
    environment (see the module docstring).

    Raises:
        ConfigError: the file has a mistake (the caller prints it, exit 2).
    """
    try:
        return load_config(path)
    except ConfigError as exc:
        # An unset secret also fails the rules on its value (a token's length): retry when
        # any problem is an unset variable; if the file then loads, those were all.
        if not any(p.message.startswith(_UNSET) and "is not set" in p.message
                   for p in exc.problems):
            raise
        original = exc
    try:
        return load_config(path, env=_Lenient(os.environ))
    except ConfigError:
        raise original from None


def console_url(config: GatewayConfig, source: Path) -> str:
    """The console's base URL as seen from this machine.

    Raises:
        SiteProblem: the config has no console, or it is switched off.
    """
    console = config.console
    if console is None or not console.enabled:
        state = "switches it off (console.enabled: false)" if console is not None \
            else "has no console: section"
        raise SiteProblem(f"{source} {state}, so the gateway serves no API to talk to; "
                          f"turn the console on, or pass --url")
    if console.port == 0:
        raise SiteProblem(f"{source} lets the console pick a free port (console.port: 0); "
                          f"pass --url with the port it logged")
    scheme = "https" if console.cert_file is not None else "http"
    return f"{scheme}://{_client_host(console.host)}:{console.port}"


def _client_host(host: str) -> str:
    """Where to connect for a server listening on ``host``: a wildcard means this machine."""
    if host in ("", "0.0.0.0", "*"):  # listening everywhere includes loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[{address}]" if address.version == 6 else host


class _Lenient(Mapping[str, str]):
    """The environment, where every unset name reads as a placeholder."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, name: str) -> str:
        return self._env.get(name, _PLACEHOLDER)

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)
