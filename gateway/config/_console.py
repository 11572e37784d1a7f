"""``console:``: the operator console and its REST API, served by the gateway's one HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from gateway.config._northbound import HttpServerLimits
from gateway.config._types import Duration
from gateway.config._types import StrictModel as _Model

__all__ = ["ConsoleConfig", "LoginLimits"]


class LoginLimits(_Model):
    """How many wrong passwords a client may try before it has to wait."""

    max_failures: int = Field(default=5, ge=1, le=100,
                              description="Failed logins allowed per user name and per client "
                                          "address within 'window'.")
    window: Annotated[Duration, Field(gt=0)] = Field(default=300.0,
                                                     description="See max_failures.")
    lockout: Annotated[Duration, Field(gt=0)] = Field(
        default=300.0, description="How long a user name or client address that used up its "
                                   "failures is refused (HTTP 429), even with the right "
                                   "password.")


class ConsoleConfig(_Model):
    """The console: alarm board, work orders, devices, history, KPIs, and the REST API."""

    enabled: bool = Field(default=True, description="Serve the console. Writing a 'console:' "
                                                    "section turns it on; false keeps the "
                                                    "section but switches it off.")
    host: str = Field(default="127.0.0.1",
                      description="Listen address. Loopback by default: open it to the "
                                  "control room's network on purpose (e.g. 0.0.0.0), ideally "
                                  "with TLS.")
    port: int = Field(default=8480, ge=0, le=65535)
    cert_file: Path | None = Field(default=None, description="Serve HTTPS with this "
                                                             "certificate (PEM chain).")
    key_file: Path | None = None
    limits: HttpServerLimits = Field(
        default=HttpServerLimits(max_connections=128),
        description="Connection, time and size limits against slow or oversized clients. "
                    "Each open browser holds one connection for its live feed.")
    users_file: Path | None = Field(
        default=None,
        description="SQLite file of the console's users and API tokens; relative paths are "
                    "under state_dir. Default: users-<site>-<gateway>.sqlite3 in the state "
                    "folder.")
    session_ttl: Annotated[Duration, Field(gt=60)] = Field(
        default=12 * 3600.0,
        description="A login lasts this long without activity (one shift by default).")
    login: LoginLimits = Field(default_factory=LoginLimits)

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> ConsoleConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self
