"""``metrics:``: the Prometheus ``/metrics`` endpoint on the gateway's HTTP server."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Annotated

from pydantic import Field, SecretStr, model_validator

from gateway.config._northbound import HttpServerLimits
from gateway.config._types import Duration
from gateway.config._types import StrictModel as _Model

__all__ = ["MetricsConfig"]

#: Who may scrape when ``allow`` is not given: this machine only.
LOOPBACK: tuple[IPv4Network | IPv6Network, ...] = (IPv4Network("127.0.0.0/8"),
                                                   IPv6Network("::1/128"))


class MetricsConfig(_Model):
    """Prometheus metrics at ``GET /metrics``: off unless this section is given."""

    enabled: bool = Field(default=True, description="Serve /metrics. Writing a 'metrics:' "
                                                    "section turns it on; false keeps the "
                                                    "section but switches it off.")
    allow: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: list(LOOPBACK),
        description="Client networks (CIDR) that may scrape, checked against the TCP peer's "
                    "address. Default: loopback only (a Prometheus on the gateway itself or "
                    "an SSH tunnel); add the monitoring server's address on purpose.")
    token: SecretStr | None = Field(
        default=None,
        description="When set, a scrape must also send 'Authorization: Bearer <token>' "
                    "(Prometheus: authorization.credentials_file). Use ${ENV} to keep it out "
                    "of the file.")
    host: str = Field(default="127.0.0.1",
                      description="Listen address, used only when neither the console nor "
                                  "upstream.status_api runs an HTTP server (else /metrics is "
                                  "served by that server).")
    port: int = Field(default=9480, ge=0, le=65535, description="See host.")
    limits: HttpServerLimits = Field(
        default=HttpServerLimits(max_connections=16),
        description="Limits of the server /metrics runs on when it is its own; see host.")
    loop_lag_interval: Annotated[Duration, Field(gt=0, le=60)] = Field(
        default=0.5,
        description="How often the event-loop lag sampler wakes up; each wake-up measures "
                    "how late it came (propgw_event_loop_lag_seconds).")

    @model_validator(mode="after")
    def _token_length(self) -> MetricsConfig:
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token: use at least 16 characters")
        return self
