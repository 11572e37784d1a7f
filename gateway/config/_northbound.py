"""Work orders (response windows, escalation ladders) and upstream delivery (MQTT, HTTP, outbox)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ByteSize,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config._rules import Message
from gateway.config._site import BackoffConfig
from gateway.config._types import Duration, Identifier
from gateway.config._types import StrictModel as _Model
from gateway.i18n import CATEGORY_TITLES

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_PRIORITY_POLICIES",
    "CategoryPolicy",
    "EscalationStep",
    "HttpServerLimits",
    "HttpTimeouts",
    "HttpTlsConfig",
    "HttpUpstreamConfig",
    "OutboxConfig",
    "Priority",
    "ResponsePolicy",
    "StatusApiConfig",
    "UpstreamConfig",
    "WorkOrdersConfig",
]

# --------------------------------------------------------------------------- work orders

Priority = Literal["P0", "P1", "P2", "P3"]
_PRIORITIES: tuple[Priority, ...] = ("P0", "P1", "P2", "P3")


class EscalationStep(_Model):
    """One rung of an escalation ladder: who is asked, and by when they must acknowledge."""

    role: Identifier = Field(description="Role id sent upstream, e.g. control_room, patrol.")
    name: Message = Field(description="Role shown to people, e.g. {zh: 中控室, en: Control room}.")
    within: Duration = Field(
        gt=0, description="Acknowledgement deadline of this step, counted from raised_at; "
                          "when it passes unacknowledged the order goes to the next step.")


class ResponsePolicy(_Model):
    """Response windows and escalation ladder for one priority (or one category)."""

    on_site_within: Duration = Field(
        gt=0, description="On-site window: raised_at + this is respond_by.")
    resolve_within: Duration | None = Field(
        default=None, gt=0,
        description="Resolution window (maintenance arrival for entrapment): resolve_by.")
    pre_alerts: list[Duration] = Field(
        default_factory=list,
        description="Reminders sent upstream this long after raised_at while unresolved; "
                    "each must fall before resolve_within.")
    follow_up_after: Duration | None = Field(
        default=None, gt=0,
        description="Follow-up (回访) reminder this long after the order is resolved.")
    follow_up_within: Duration = Field(
        default=24 * 3600.0, gt=0,
        description="A follow-up not recorded this long after it fell due is overdue.")
    ladder: list[EscalationStep] = Field(min_length=1, max_length=10,
                                         description="Escalation ladder, first step first.")

    @model_validator(mode="after")
    def _consistent(self) -> ResponsePolicy:
        return _check_policy(self)


class CategoryPolicy(_Model):
    """Overrides for one alarm category; anything left out comes from its priority."""

    title: Message | None = Field(default=None,
                                  description="Work-order title; default: the category name.")
    priority: Priority | None = Field(default=None,
                                      description="Overrides the priority of the rule.")
    work_order: bool = Field(default=True,
                             description="False: alarms of this category raise no work order.")
    on_site_within: Duration | None = Field(default=None, gt=0)
    resolve_within: Duration | None = Field(default=None, gt=0)
    pre_alerts: list[Duration] | None = None
    follow_up_after: Duration | None = Field(default=None, gt=0)
    follow_up_within: Duration | None = Field(default=None, gt=0)
    ladder: list[EscalationStep] | None = Field(default=None, min_length=1, max_length=10)


def _step(role: str, zh: str, en: str, within: float) -> dict[str, Any]:
    return {"role": role, "name": {"zh": zh, "en": en}, "within": within}


def _ladder(*deadlines: float) -> list[dict[str, Any]]:
    roles = (("control_room", "中控室", "Control room"), ("patrol", "巡逻岗", "Patrol"),
             ("engineering", "工程组", "Engineering"), ("supervisor", "主管", "Supervisor"))
    return [_step(r, zh, en, d) for (r, zh, en), d in zip(roles, deadlines, strict=True)]


_MIN, _HOUR, _DAY = 60.0, 3600.0, 86400.0

#: Response windows: docs/facility-rules.md#response-windows.
#: P0: control room at once, patrol on site within 5 min, maintenance within
#: 30 min with pre-alerts at 15 and 25 min; routine repairs get their own windows; follow-up
#: (回访) within 48 h of the repair.
DEFAULT_PRIORITY_POLICIES: dict[str, dict[str, Any]] = {
    "P0": {"on_site_within": 5 * _MIN, "resolve_within": 30 * _MIN,
           "pre_alerts": [15 * _MIN, 25 * _MIN], "follow_up_after": 48 * _HOUR,
           "ladder": _ladder(1 * _MIN, 5 * _MIN, 15 * _MIN, 30 * _MIN)},
    "P1": {"on_site_within": 30 * _MIN, "resolve_within": 4 * _HOUR,
           "follow_up_after": 48 * _HOUR,
           "ladder": _ladder(5 * _MIN, 15 * _MIN, 30 * _MIN, 2 * _HOUR)},
    "P2": {"on_site_within": 4 * _HOUR, "resolve_within": 24 * _HOUR,
           "follow_up_after": 48 * _HOUR,
           "ladder": _ladder(30 * _MIN, 2 * _HOUR, 4 * _HOUR, 24 * _HOUR)},
    "P3": {"on_site_within": 48 * _HOUR, "resolve_within": 7 * _DAY,
           "follow_up_after": 48 * _HOUR,
           "ladder": _ladder(4 * _HOUR, 12 * _HOUR, 24 * _HOUR, 48 * _HOUR)},
}

#: Built-in categories: a title for each (gateway.i18n's catalogue), nothing else.
DEFAULT_CATEGORIES: dict[str, dict[str, Any]] = {
    name: {"title": {"zh": title.zh, "en": title.en}} for name, title in CATEGORY_TITLES.items()}


class WorkOrdersConfig(_Model):
    """Which alarms raise work orders, their windows and their escalation ladders."""

    create_for: list[Priority] = Field(
        default_factory=lambda: list(_PRIORITIES), min_length=0,
        description="Priorities that raise work orders (a rule's work_order: false and a "
                    "category's work_order: false opt out too).")
    # Keys are plain text, checked below: the loader cannot yet place an error on a dict key.
    priorities: dict[str, ResponsePolicy] = Field(
        default_factory=dict,
        description="Windows and ladder per priority; keys given here are merged over the "
                    "built-in defaults.")
    categories: dict[str, CategoryPolicy] = Field(
        default_factory=dict,
        description="Per-category overrides (title, priority, windows, ladder), merged over "
                    "the built-in categories.")
    forget_after: Duration = Field(
        default=7 * _DAY, gt=0,
        description="An order still tracked this long after it was raised is forgotten "
                    "(no more escalation or reminders).")

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["priorities"] = _merged(DEFAULT_PRIORITY_POLICIES, data.get("priorities"))
        data["categories"] = _merged(DEFAULT_CATEGORIES, data.get("categories"))
        return data

    @field_validator("priorities", mode="before")
    @classmethod
    def _priority_names(cls, value: Any) -> Any:
        for name in value if isinstance(value, dict) else ():
            if name not in _PRIORITIES:
                raise ValueError(f"priority {name!r}: expected one of {', '.join(_PRIORITIES)}")
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _category_names(cls, value: Any) -> Any:
        for name in value if isinstance(value, dict) else ():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
                raise ValueError(f"category {name!r}: use lower-case letters, digits and '_'")
        return value

    @model_validator(mode="after")
    def _categories_resolve(self) -> WorkOrdersConfig:
        for name, cat in self.categories.items():
            for prio in [cat.priority] if cat.priority else self.create_for:
                try:
                    self.policy(name, prio)
                except ValidationError as exc:
                    problems = "; ".join(e["msg"].removeprefix("Value error, ")
                                         for e in exc.errors())
                    raise ValueError(f"categories.{name} with {prio}: {problems}") from None
        return self

    def policy(self, category: str, priority: str) -> tuple[str, ResponsePolicy] | None:
        """The effective (priority, policy) for an alarm, or None when it makes no order."""
        override = self.categories.get(category)
        if override is not None and not override.work_order:
            return None
        prio = (override.priority if override and override.priority else priority)
        if prio not in self.create_for or prio not in self.priorities:
            return None
        return prio, self._windows(category, prio)

    def report_policy(self, category: str, priority: str) -> ResponsePolicy:
        """The windows and ladder of a reported repair: its priority's, with the category's
        own windows when the site gives them. A report always makes an order, so
        ``create_for`` and a category's ``work_order: false`` (which say which *alarms*
        make orders) and its ``priority`` (the report catalogue grades reports) do not apply.

        Raises:
            KeyError: ``priority`` is not P0 ... P3.
        """
        return self._windows(category, priority)

    def _windows(self, category: str, prio: str) -> ResponsePolicy:
        override = self.categories.get(category)
        base = self.priorities[prio]
        if override is None:
            return base
        changes = {k: v for k in ("on_site_within", "resolve_within", "pre_alerts",
                                  "follow_up_after", "follow_up_within", "ladder")
                   if (v := getattr(override, k)) is not None}
        if not changes:
            return base  # a title (every built-in category) changes no window
        return ResponsePolicy.model_validate({**base.model_dump(), **{
            k: ([s.model_dump() for s in v] if k == "ladder" else v)
            for k, v in changes.items()}})


def _merged(defaults: dict[str, dict[str, Any]], given: Any) -> Any:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        return given  # pydantic reports the type error
    out: dict[Any, Any] = {k: dict(v) for k, v in defaults.items()}
    for key, value in given.items():
        base = out.get(str(key))
        out[key] = {**base, **value} if isinstance(value, dict) and base else value
    return out


def _check_policy(policy: ResponsePolicy) -> ResponsePolicy:
    deadlines = [s.within for s in policy.ladder]
    if any(b <= a for a, b in itertools.pairwise(deadlines)):
        raise ValueError(f"ladder deadlines ('within') must increase step by step, got "
                         f"{', '.join(f'{d:g}s' for d in deadlines)}")
    roles = [s.role for s in policy.ladder]
    if len(set(roles)) != len(roles):
        raise ValueError(f"a role appears twice in the ladder: {', '.join(roles)}")
    for p in policy.pre_alerts:
        if policy.resolve_within is None or not 0 < p < policy.resolve_within:
            raise ValueError(f"pre_alerts: {p:g}s must lie between 0 and resolve_within "
                             f"({policy.resolve_within}s)")
    return policy


# --------------------------------------------------------------------------- upstream


class OutboxConfig(_Model):
    """The durable queue between the work-order desk and the upstream publishers."""

    path: Path | None = Field(
        default=None,
        description="SQLite file; default <state_dir>/outbox-<site id>-<gateway id>.sqlite3.")
    max_messages: int = Field(
        default=50_000, ge=100,
        description="Bound on queued messages; beyond it telemetry and non-life-safety "
                    "alarm messages are shed (oldest first). Work orders are never shed.")
    max_bytes: ByteSize = Field(
        default=ByteSize(64 * 1024 * 1024), ge=64 * 1024,
        description="Bound on queued payload bytes (e.g. 64MiB), shedding as above.")


class HttpTimeouts(_Model):
    """Per-phase deadlines of one upstream HTTP request."""

    connect: Duration = Field(default=5.0, gt=0, le=120)
    read: Duration = Field(default=10.0, gt=0, le=300,
                           description="Longest silence while waiting for the response.")
    total: Duration = Field(default=15.0, gt=0, le=600, description="Whole request.")


class HttpTlsConfig(_Model):
    """Certificate checking for the platform's HTTPS endpoint."""

    verify: bool = Field(default=True,
                         description="Verify the server certificate. Never off in production.")
    ca_file: Path | None = Field(default=None,
                                 description="CA bundle (PEM); default the system's.")
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM).")
    key_file: Path | None = Field(default=None, description="Client private key (PEM).")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> HttpTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


def _check_url(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


class HttpUpstreamConfig(_Model):
    """A platform with a REST API: work orders (and alarms) are POSTed as JSON."""

    url: str = Field(description="POST work orders and their updates here.")
    alarms_url: str | None = Field(default=None,
                                   description="POST alarm transitions here; default: not sent.")
    telemetry_url: str | None = Field(
        default=None, description="POST telemetry messages here (with a telemetry: section); "
                                  "default: not sent over HTTP.")
    token: SecretStr | None = Field(default=None,
                                    description="Sent as 'Authorization: Bearer <token>'.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers (values may be ${ENV}).")
    timeouts: HttpTimeouts = Field(default_factory=HttpTimeouts)
    retry: BackoffConfig = Field(
        default=BackoffConfig(initial=1.0, max=60.0),
        description="Back-off between retries of 5xx, 408/429 and network errors.")
    tls: HttpTlsConfig = Field(default_factory=HttpTlsConfig)

    @field_validator("url", "alarms_url", "telemetry_url")
    @classmethod
    def _http_urls(cls, value: str | None) -> str | None:
        return _check_url(value)


class HttpServerLimits(_Model):
    """What one client may cost a gateway HTTP endpoint: connections, time and bytes.

    Slow or oversized requests are cut off early so that they cannot exhaust the process's
    file descriptors, which the upstream delivery and the device links share.
    """

    max_connections: int = Field(
        default=64, ge=1, le=1024,
        description="Connections open at once. Beyond it the oldest connection that has not "
                    "yet sent a complete request head is closed to make room; when every "
                    "connection is busy with a request, a new one is closed at once.")
    header_timeout: Duration = Field(
        default=5.0, gt=0, le=60,
        description="A new connection must deliver its request line and headers within this "
                    "(the TLS handshake included), or it is closed.")
    body_timeout: Duration = Field(
        default=10.0, gt=0, le=300,
        description="An authorised request must deliver its body within this, or it is "
                    "answered 408 and closed.")
    keepalive_timeout: Duration = Field(
        default=15.0, gt=0, le=600,
        description="An idle connection is closed this long after its last response, unless "
                    "the next request has completely arrived by then.")
    max_header_size: ByteSize = Field(
        default=ByteSize(8 * 1024), ge=1024, le=64 * 1024,
        description="Longest request line and longest header field; longer is answered 400.")
    max_headers: int = Field(default=32, ge=8, le=256,
                             description="Header fields per request; more is answered 400.")
    max_body_size: ByteSize = Field(
        default=ByteSize(64 * 1024), ge=1024, le=16 * 1024 * 1024,
        description="Largest request body; larger is answered 413.")


class StatusApiConfig(_Model):
    """The gateway's endpoint where an HTTP platform posts work-order status answers."""

    host: str = Field(default="127.0.0.1",
                      description="Listen address; 0.0.0.0 for every interface.")
    port: int = Field(default=8480, ge=0, le=65535)
    token: SecretStr = Field(description="Bearer token the platform must send.")
    cert_file: Path | None = Field(default=None, description="Serve HTTPS with this "
                                                             "certificate (PEM).")
    key_file: Path | None = None
    limits: HttpServerLimits = Field(
        default_factory=HttpServerLimits,
        description="Connection, time and size limits against slow or oversized clients.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> StatusApiConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if len(self.token.get_secret_value()) < 16:
            raise ValueError("token: use at least 16 characters")
        return self


class UpstreamConfig(_Model):
    """Where alarms and work orders go: the platform's MQTT broker and/or its HTTP API."""

    broker: str | None = Field(default=None, description="Broker id from 'brokers' (MQTT).")
    topic_prefix: str = Field(default="propgw", pattern=r"^[^#+]+$")
    qos: Literal[1, 2] = 1
    alarms: bool = Field(default=True, description="Also send every alarm transition.")
    http: HttpUpstreamConfig | None = None
    status_api: StatusApiConfig | None = None
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)

    @model_validator(mode="after")
    def _somewhere_to_send(self) -> UpstreamConfig:
        if self.broker is None and self.http is None:
            raise ValueError("give 'broker' (MQTT), 'http', or both")
        return self
