"""The ``influxdb:`` section: readings written to an InfluxDB as history (off unless given)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator

from gateway.config._types import Duration
from gateway.config._types import StrictModel as _Model

__all__ = ["InfluxBufferConfig", "InfluxConfig"]


class InfluxBufferConfig(_Model):
    """Where batches wait while InfluxDB cannot take them, and how much may wait."""

    max_points: int = Field(
        default=500_000, ge=1,
        description="Bound on points waiting; beyond it the oldest batches are dropped "
                    "(counted, logged once).")
    max_bytes: ByteSize = Field(
        default=ByteSize(64 * 1024 * 1024), ge=1024,
        description="Bound on line-protocol bytes waiting (e.g. 64MiB), dropping as above.")


class InfluxConfig(_Model):
    """An InfluxDB 2.x/3.x (``/api/v2/write``) or 1.8+ (its v2 compatibility endpoint)."""

    url: str = Field(description="Base URL, e.g. http://influxdb:8086 (no path).")
    org: str = Field(default="", description="Organisation (2.x); ignored by 1.8 and 3.x.")
    bucket: str = Field(min_length=1,
                        description="Bucket; for 1.8 'database/retention-policy' "
                                    "(or just 'database').")
    token: SecretStr | None = Field(
        default=None, description="API token, normally '${INFLUX_TOKEN}'; for 1.8 "
                                  "'user:password'; none when the server has no auth.")
    precision: Literal["s", "ms", "us", "ns"] = Field(
        default="ms", description="Timestamp precision; two readings of one point within one "
                                  "unit overwrite each other.")
    batch_size: int = Field(default=500, ge=1, le=50_000,
                            description="Write when this many points are collected ...")
    batch_interval: Duration = Field(default=1.0, gt=0, le=300,
                                     description="... or this long after the first of them.")
    timeout: Duration = Field(default=10.0, gt=0, le=300, description="One write request.")
    retry_max: Duration = Field(default=60.0, gt=0, le=3600,
                                description="Longest wait between attempts while it is down.")
    verify_tls: bool = Field(default=True,
                             description="Verify the server certificate (https). Never off "
                                         "in production.")
    ca_file: str | None = Field(default=None, description="CA bundle (PEM); default the "
                                                          "system's.")
    gzip: bool = Field(default=False,
                       description="Compress write requests (about 10x less traffic; costs "
                                   "CPU on the gateway). For a server across a slow uplink.")
    queue: int = Field(default=10_000, ge=100, le=1_000_000,
                       description="Readings waiting to be batched; beyond it the oldest are "
                                   "dropped (the alarm path is never slowed).")
    buffer: InfluxBufferConfig = Field(default_factory=InfluxBufferConfig)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+/?", value):
            raise ValueError(f"expected http(s)://host:port with no path, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> InfluxConfig:
        if self.buffer.max_points < self.batch_size:
            raise ValueError(f"buffer.max_points ({self.buffer.max_points}) must be at least "
                             f"batch_size ({self.batch_size})")
        return self
