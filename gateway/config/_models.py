"""Pydantic v2 models of the site config file (the only thing a field engineer edits).

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
The reference for each key is ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from gateway.config._accounting import BUILDING_KIND, BUILDING_PREFIX, AccountingConfig
from gateway.config._alarms import (
    AlarmsConfig,
    ChatterConfig,
    FloodConfig,
    JournalConfig,
    SuppressionRule,
)
from gateway.config._conditions import (
    AllCondition,
    AnyCondition,
    Condition,
    DeviceRefCondition,
    NotCondition,
    PointCondition,
)
from gateway.config._console import ConsoleConfig, LoginLimits
from gateway.config._derived import DerivedPoint, derived_problems
from gateway.config._devices import (
    DeviceConfig,
    Location,
    ModbusPoint,
    ModbusRtuDevice,
    ModbusTcpDevice,
    MqttDevice,
    MqttPoint,
    placeholders,
)
from gateway.config._health import HealthConfig
from gateway.config._influx import InfluxBufferConfig, InfluxConfig
from gateway.config._metrics import MetricsConfig
from gateway.config._northbound import (
    DEFAULT_CATEGORIES,
    DEFAULT_PRIORITY_POLICIES,
    CategoryPolicy,
    EscalationStep,
    HttpServerLimits,
    HttpTimeouts,
    HttpTlsConfig,
    HttpUpstreamConfig,
    OutboxConfig,
    Priority,
    ResponsePolicy,
    StatusApiConfig,
    UpstreamConfig,
    WorkOrdersConfig,
)
from gateway.config._references import reference_problems, reference_targets
from gateway.config._reports import ReportsConfig
from gateway.config._rules import Message, RuleConfig
from gateway.config._site import BackoffConfig, BrokerConfig, SiteConfig, TlsConfig
from gateway.config._telemetry import (
    PointSelector,
    ReportPolicy,
    TelemetryConfig,
    TelemetryOverride,
)
from gateway.config._types import Identifier
from gateway.config._types import StrictModel as _Model

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_PRIORITY_POLICIES",
    "AccountingConfig",
    "AlarmsConfig",
    "AllCondition",
    "AnyCondition",
    "BackoffConfig",
    "BrokerConfig",
    "CategoryPolicy",
    "ChatterConfig",
    "Condition",
    "ConsoleConfig",
    "DerivedPoint",
    "DeviceConfig",
    "EscalationStep",
    "FloodConfig",
    "GatewayConfig",
    "HealthConfig",
    "HttpServerLimits",
    "HttpTimeouts",
    "HttpTlsConfig",
    "HttpUpstreamConfig",
    "InfluxBufferConfig",
    "InfluxConfig",
    "JournalConfig",
    "Location",
    "LoginLimits",
    "Message",
    "ModbusPoint",
    "ModbusRtuDevice",
    "ModbusTcpDevice",
    "MqttDevice",
    "MqttPoint",
    "NotCondition",
    "OutboxConfig",
    "PointCondition",
    "PointSelector",
    "Priority",
    "ReportPolicy",
    "ResponsePolicy",
    "RuleConfig",
    "SiteConfig",
    "StatusApiConfig",
    "SuppressionRule",
    "TelemetryConfig",
    "TelemetryOverride",
    "TlsConfig",
    "UpstreamConfig",
    "WorkOrdersConfig",
    "durable_state_dir",
    "placeholders",
]


# --------------------------------------------------------------------------- top level


class GatewayConfig(_Model):
    """The whole site config file."""

    site: SiteConfig
    brokers: dict[Identifier, BrokerConfig] = Field(default_factory=dict)
    upstream: UpstreamConfig | None = None
    state_dir: Path = Field(
        default=Path("/var/lib/propgw"),
        description="Where state that must survive a restart (outbox, alarm journal) is kept. "
                    "Used only when set in the file (or, for the outbox, via systemd's "
                    "$STATE_DIRECTORY); otherwise that state lives in memory and a warning "
                    "says so, so tests and demos never share /var/lib/propgw.")
    work_orders: WorkOrdersConfig = Field(default_factory=WorkOrdersConfig)
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)
    reports: ReportsConfig = Field(
        default_factory=ReportsConfig,
        description="Reported repairs: the category catalogue and the reporter's privacy.")
    health: HealthConfig = Field(default_factory=HealthConfig)
    console: ConsoleConfig | None = Field(
        default=None, description="The operator console; off unless this section is given.")
    accounting: AccountingConfig | None = Field(
        default=None, description="Energy and water consumption per interval; off unless "
                                  "this section is given.")
    influxdb: InfluxConfig | None = Field(
        default=None, description="Readings into InfluxDB as history; off unless given.")
    metrics: MetricsConfig | None = Field(
        default=None, description="Prometheus /metrics; off unless this section is given.")
    telemetry: TelemetryConfig | None = Field(
        default=None, description="Readings upstream by exception; off unless given.")
    devices: list[DeviceConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _cross_references(self) -> GatewayConfig:
        problems: list[str] = []
        ids: dict[str, int] = {}
        for i, dev in enumerate(self.devices):
            if dev.id in ids:
                problems.append(f"devices[{i}].id: {dev.id!r} is already used by "
                                f"devices[{ids[dev.id]}]")
            ids.setdefault(dev.id, i)
        for i, dev in enumerate(self.devices):
            problems += derived_problems(f"devices[{i}]", (p.name for p in dev.points),
                                         dev.derived)
        problems += self._check_http_server()
        problems += self._check_brokers()
        problems += self._check_serial_buses()
        problems += self._check_rules()
        problems += self._check_telemetry()
        if problems:
            # One line per problem, "path: message"; the loader splits them back apart.
            raise ValueError("\n".join(problems))
        return self

    def _check_http_server(self) -> list[str]:
        status = self.upstream.status_api if self.upstream is not None else None
        problems = self._check_metrics_listener(status is not None)
        if self.console is None or not self.console.enabled or status is None:
            return problems
        # One HTTP server serves the console and the platform's status answers.
        given = sorted(status.model_fields_set & {"host", "port", "cert_file", "key_file",
                                                  "limits"})
        if given:
            problems.append(f"upstream.status_api: {', '.join(given)} cannot be set here while "
                            f"the console is on: the console's server answers the platform "
                            f"too; set them under console: (keep only the token here)")
        return problems

    def _check_metrics_listener(self, status_api: bool) -> list[str]:
        metrics = self.metrics
        if metrics is None or not metrics.enabled:
            return []
        console = self.console is not None and self.console.enabled
        if not (console or status_api):
            return []
        given = sorted(metrics.model_fields_set & {"host", "port", "limits"})
        if not given:
            return []
        where = "console:" if console else "upstream.status_api:"
        return [f"metrics: {', '.join(given)} cannot be set here while {where} runs the "
                f"gateway's HTTP server: /metrics is served there (set them under {where})"]

    def _check_brokers(self) -> list[str]:
        problems = []
        if (self.upstream is not None and self.upstream.broker is not None
                and self.upstream.broker not in self.brokers):
            problems.append(f"upstream.broker: {self.upstream.broker!r} is not in brokers "
                            f"(known: {', '.join(self.brokers) or 'none'})")
        for i, dev in enumerate(self.devices):
            if not isinstance(dev, MqttDevice):
                continue
            if dev.broker is None:
                if len(self.device_brokers()) != 1:
                    problems.append(f"devices[{i}].broker: required when there is not exactly "
                                    f"one device broker (known: {', '.join(self.brokers)})")
            elif dev.broker not in self.brokers:
                problems.append(f"devices[{i}].broker: {dev.broker!r} is not in brokers "
                                f"(known: {', '.join(self.brokers) or 'none'})")
        return problems

    def _check_serial_buses(self) -> list[str]:
        problems = []
        first: dict[str, tuple[int, ModbusRtuDevice]] = {}
        seen_units: dict[tuple[str, int], int] = {}
        for i, dev in enumerate(self.devices):
            if isinstance(dev, ModbusRtuDevice):
                j, other = first.setdefault(dev.port, (i, dev))
                if dev.serial_settings != other.serial_settings:
                    problems.append(f"devices[{i}]: serial settings of {dev.port} "
                                    f"{dev.serial_settings} differ from devices[{j}] "
                                    f"{other.serial_settings}; one bus has one setting")
                key = (dev.port, dev.unit)
                if key in seen_units:
                    problems.append(f"devices[{i}].unit: unit {dev.unit} on {dev.port} is "
                                    f"already used by devices[{seen_units[key]}]")
                seen_units.setdefault(key, i)
        return problems

    def _check_rules(self) -> list[str]:
        problems = []
        by_id = {d.id: d for d in self.devices}
        kinds = {d.kind for d in self.devices}
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.id in seen:
                problems.append(f"rules[{i}].id: {rule.id!r} is used twice")
            seen.add(rule.id)
            if rule.kind is not None and rule.kind not in kinds:
                problems.append(f"rules[{i}].kind: no device has kind {rule.kind!r} "
                                f"(kinds: {', '.join(sorted(kinds)) or 'none'})")
            for dev_id in rule.devices or []:
                if dev_id not in by_id:
                    problems.append(f"rules[{i}].devices: unknown device {dev_id!r}")
            for dev in self.rule_devices(rule):
                missing = rule.points() - self.points_of(dev)
                if missing:
                    problems.append(f"rules[{i}].when: device {dev.id!r} has no point(s) "
                                    f"{', '.join(sorted(missing))} (rule {rule.id})")
        return problems + reference_problems(self.rules, self.devices, self.points_of,
                                             self.rule_devices)

    def points_of(self, dev: DeviceConfig) -> set[str]:
        """Every point of a device a rule may read: its own, derived and accounting points."""
        names = dev.point_names()
        if self.accounting is not None:
            names |= self.accounting.points_for(names)
        return names

    def _check_telemetry(self) -> list[str]:
        tele = self.telemetry
        if tele is None or not tele.enabled:
            return []
        problems = []
        up = self.upstream
        if up is None or (up.broker is None and (up.http is None
                                                 or up.http.telemetry_url is None)):
            problems.append("telemetry: nowhere to send it: needs upstream.broker (MQTT) or "
                            "upstream.http.telemetry_url")
        kinds = {d.kind for d in self.devices}
        ids = {d.id for d in self.devices}
        buildings = self.accounted_buildings()
        if buildings:  # accounting's virtual devices publish readings too
            kinds.add(BUILDING_KIND)
            ids |= {BUILDING_PREFIX + b for b in buildings}
        groups: list[tuple[str, list[PointSelector]]] = [
            ("include", tele.include), ("exclude", tele.exclude),
            ("overrides", list(tele.overrides))]
        for name, selectors in groups:
            for i, sel in enumerate(selectors):
                for kind in sel.kinds or []:
                    if kind not in kinds:
                        problems.append(f"telemetry.{name}[{i}].kinds: no device has kind "
                                        f"{kind!r} (kinds: {', '.join(sorted(kinds)) or 'none'})")
                for dev in sel.devices or []:
                    if not any(c in dev for c in "*?[") and dev not in ids:
                        problems.append(f"telemetry.{name}[{i}].devices: unknown device "
                                        f"{dev!r} (a pattern needs *, ? or [...])")
        for i, override in enumerate(tele.overrides):
            merged = {**tele.defaults.model_dump(), **override.policy_fields()}
            if merged["min_interval"] > merged["max_interval"]:
                problems.append(f"telemetry.overrides[{i}]: min_interval "
                                f"({merged['min_interval']:g}s) is longer than max_interval "
                                f"({merged['max_interval']:g}s)")
        return problems

    def accounted_buildings(self) -> set[str]:
        """Buildings that get accounting totals (``building.<name>`` devices)."""
        acct = self.accounting
        if acct is None or not acct.enabled:
            return set()
        return {d.location.building for d in self.devices if d.enabled and d.location.building
                and acct.points_for(d.point_names())}

    def device_brokers(self) -> set[str]:
        """Broker ids other than the upstream one."""
        upstream = self.upstream.broker if self.upstream else None
        return {b for b in self.brokers if b != upstream} or set(self.brokers)

    def referenced_devices(self, rule: RuleConfig, ref: DeviceRefCondition
                           ) -> list[DeviceConfig]:
        """The devices a ``device:`` reference of ``rule`` reads (a templated reference: those
        it names for some device of the rule)."""
        return reference_targets(rule, ref, self.devices, self.rule_devices)

    def rule_devices(self, rule: RuleConfig) -> list[DeviceConfig]:
        """Enabled devices a rule applies to."""
        if rule.devices is not None:
            wanted = set(rule.devices)
            return [d for d in self.devices if d.id in wanted and d.enabled]
        return [d for d in self.devices if d.kind == rule.kind and d.enabled]


def durable_state_dir(config: GatewayConfig, env: Mapping[str, str] | None = None) -> Path | None:
    """Where state that must survive restarts goes; None: nowhere durable was configured.

    ``state_dir`` when the file sets it, else ``$STATE_DIRECTORY`` (set by systemd's
    ``StateDirectory=``). The built-in ``state_dir`` default is deliberately not used on its
    own: every test run and demo on a machine would then share (and replay) one outbox and
    one alarm journal.
    """
    env = os.environ if env is None else env
    if "state_dir" in config.model_fields_set:
        return config.state_dir
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return None
