"""Who the gateway is and how it reaches MQTT brokers (devices' and the platform's)."""

from __future__ import annotations

import functools
import zoneinfo
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.config._types import Duration, Identifier
from gateway.config._types import StrictModel as _Model

__all__ = [
    "BackoffConfig",
    "BrokerConfig",
    "SiteConfig",
    "TlsConfig",
]

# --------------------------------------------------------------------------- site and brokers


class SiteConfig(_Model):
    """Who this gateway is; the ids appear in every upstream topic and work order."""

    id: Identifier = Field(description="Property (site) id, unique across the fleet.")
    name: str = Field(min_length=1, description="Human name of the property, e.g. 阳光花园.")
    gateway_id: Identifier = Field(description="This gateway's id, unique within the site.")
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone of the site.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        # A misspelt zone would run night schedules and the console's clock hours off.
        zones = _zones()
        if zones and name not in zones:
            import difflib  # noqa: PLC0415 - for a mistake's hint only: a gateway that runs never loads it

            close = difflib.get_close_matches(name, zones, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown time zone {name!r}{hint} (IANA names such as "
                             f"Asia/Shanghai)")
        return name


class BackoffConfig(_Model):
    """Reconnect policy: ``min(initial * 2**tries, max)`` seconds with +/- ``jitter``."""

    initial: Duration = Field(default=0.5, gt=0)
    max: Duration = Field(default=30.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _cap_above_initial(self) -> BackoffConfig:
        if self.max < self.initial:
            raise ValueError(f"max ({self.max}s) must be >= initial ({self.initial}s)")
        return self


class TlsConfig(_Model):
    """TLS for an MQTT connection. With no ``ca_file`` the system's trust store is used."""

    ca_file: Path | None = None
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM).")
    key_file: Path | None = Field(default=None, description="Client private key (PEM).")
    insecure: bool = Field(default=False,
                           description="Skip host-name verification. Never in production.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


#: Default ``read_linger``: at 1,000 telemetry messages/s a read takes about five messages,
#: which took the gateway's CPU from 21 % to 12 % of a core on the bench (and from 43 % to
#: 32 % at 5,000/s) for a telemetry alarm about 3 ms later (median). 2 ms saved only half as
#: much; 10 ms saved 1-2 points more for twice the delay (bench/RESULTS.md).
READ_LINGER = 0.005
#: The largest ``read_linger`` accepted: beyond it the added delay buys next to nothing.
MAX_READ_LINGER = 0.05


class BrokerConfig(_Model):
    """One MQTT broker: a device-side broker, or the platform's upstream broker."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="Default 1883, or 8883 with tls.")
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(default=None,
                                  description="Default: propgw-<gateway_id>-<broker id>.")
    keepalive: Duration = Field(default=30.0, ge=5, le=3600)
    connect_timeout: Duration = Field(default=10.0, gt=0, le=120)
    tls: TlsConfig | None = None
    reconnect: BackoffConfig = Field(default_factory=BackoffConfig)
    max_queued_messages: int = Field(
        default=10_000, ge=100,
        description="Device brokers: received telemetry messages that may wait while the "
                    "gateway is busy; beyond this the oldest is shed and counted. Messages "
                    "with a life-safety point are never shed.")
    read_linger: Duration = Field(
        default=READ_LINGER,
        description="Device brokers: while telemetry keeps arriving, read the telemetry "
                    "connection at most once per this long, so one read takes several messages "
                    "and the gateway handles them as one batch (less CPU per message, up to "
                    "this much later). 0 reads every message at once. Never applies to the "
                    "life-safety connection.")
    broker_drops: bool = Field(
        default=True,
        description="Device brokers: also count what the broker itself dropped before the "
                    "gateway took it (mosquitto's $SYS/broker/publish/messages/dropped, read "
                    "if the broker publishes it and lets the gateway subscribe).")

    @field_validator("read_linger")
    @classmethod
    def _linger_bounded(cls, value: float) -> float:
        if value > MAX_READ_LINGER:
            raise ValueError(
                f"must be at most {MAX_READ_LINGER * 1000:.0f}ms (got {value * 1000:g}ms): "
                "telemetry would wait that long before being read; 0 turns the linger off")
        return value

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883


@functools.cache
def _zones() -> frozenset[str]:
    """Zone names the time-zone database knows; empty when there is none to check against."""
    return frozenset(zoneinfo.available_timezones())
