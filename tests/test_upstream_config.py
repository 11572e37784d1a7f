"""Upstream, outbox and work-order configuration: defaults, the documented example, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.app import outbox_path
from gateway.config import load_config_text
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SITE = "site: {id: s1, name: x, gateway_id: gw1}\n"


def errors_of(text: str, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(SITE + text, source="site.yaml", env=env)
    return [str(p) for p in info.value.problems]


def test_existing_mqtt_only_configs_keep_working_with_defaults() -> None:
    config = load_config_text(SITE + """
brokers: {platform: {host: 127.0.0.1}}
upstream: {broker: platform, topic_prefix: pm}
""")
    up = config.upstream
    assert up is not None and up.broker == "platform" and up.http is None and up.alarms
    assert up.outbox.max_messages == 50_000 and int(up.outbox.max_bytes) == 64 * 2**20
    p0 = config.work_orders.priorities["P0"]
    assert p0.on_site_within == 300 and p0.resolve_within == 1800
    assert p0.pre_alerts == [900, 1500] and p0.follow_up_after == 48 * 3600
    assert [(s.role, s.name.zh, s.within) for s in p0.ladder] == [
        ("control_room", "中控室", 60), ("patrol", "巡逻岗", 300),
        ("engineering", "工程组", 900), ("supervisor", "主管", 1800)]
    assert config.work_orders.policy("fire_alarm", "P0") == ("P0", p0)


def test_the_documented_examples_load() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = doc[doc.index("## upstream"):doc.index("## devices")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    env = {"PLATFORM_API_TOKEN": "t0k3n", "PLATFORM_TENANT": "t1",
           "PROPGW_STATUS_TOKEN": "0123456789abcdefXYZ"}
    config = load_config_text(SITE + "brokers: {platform: {host: 127.0.0.1}}\n" + blocks[0],
                              env=env)
    up = config.upstream
    assert up is not None and up.http is not None and up.status_api is not None
    assert up.http.token is not None and up.http.token.get_secret_value() == "t0k3n"
    assert up.http.tls.verify and up.http.retry.max == 60
    assert outbox_path(config) == Path("/var/lib/propgw/outbox-s1-gw1.sqlite3")
    wo = load_config_text(SITE + blocks[1]).work_orders
    assert wo.priorities["P1"].on_site_within == 1200
    assert wo.priorities["P1"].resolve_within == 4 * 3600, "merged over the default"
    assert wo.policy("door_held_open", "P2") is None
    leak = wo.policy("water_leak", "P1")
    assert leak is not None and [s.role for s in leak[1].ladder] == ["control_room", "plumber"]


def test_the_outbox_lives_in_memory_unless_a_state_directory_is_given(tmp_path: Path) -> None:
    base = SITE + "upstream: {http: {url: 'http://127.0.0.1:1/x'}}\n"
    assert outbox_path(load_config_text(base), env={}) is None
    assert outbox_path(load_config_text(base), env={"STATE_DIRECTORY": "/var/lib/a:/x"}) == \
        Path("/var/lib/a/outbox-s1-gw1.sqlite3")
    assert outbox_path(load_config_text(base + f"state_dir: {tmp_path}\n"), env={}) == \
        tmp_path / "outbox-s1-gw1.sqlite3"
    explicit = base.replace("{http:", "{outbox: {path: /srv/o.db}, http:")
    assert outbox_path(load_config_text(explicit), env={}) == Path("/srv/o.db")


def test_mistakes_are_reported_with_their_key_path() -> None:
    problems = errors_of("""
upstream:
  topic_prefix: pm
  outbox: {max_messages: 5, max_bites: 1}
work_orders:
  create_for: [P0, P9]
  priorities:
    P0:
      ladder:
        - {role: control_room, name: {zh: 中控室, en: Control room}, within: 5m}
        - {role: patrol, name: {zh: 巡逻岗, en: Patrol}, within: 1m}
""")
    text = "\n".join(problems)
    assert "upstream.outbox.max_messages" in text and "greater than or equal to 100" in text
    assert "upstream.outbox.max_bites" in text and "did you mean 'max_bytes'" in text
    assert "work_orders.create_for[1]" in text
    assert "work_orders.priorities.P0" in text and "must increase" in text
    assert any(p.startswith("upstream (line 2): give 'broker' (MQTT), 'http', or both")
               for p in errors_of("upstream: {topic_prefix: pm}\n"))


def test_http_and_status_api_are_checked() -> None:
    problems = errors_of("""
upstream:
  http:
    url: ftp://platform.example/x
    tls: {cert_file: /c.pem}
  status_api: {token: short}
""")
    text = "\n".join(problems)
    assert "upstream.http.url" in text and "http:// or https://" in text
    assert "upstream.http.tls" in text and "together" in text
    assert "upstream.status_api" in text and "16 characters" in text
    secret = errors_of("upstream: {http: {url: 'https://x.example', token: '${NOPE}'}}\n")
    assert any("NOPE is not set" in p for p in secret)


def test_status_api_limits_default_low_and_are_range_checked() -> None:
    config = load_config_text(f"{SITE}upstream: {{http: {{url: 'https://x.example/wo'}}, "
                              "status_api: {token: 0123456789abcdef}}\n")
    assert config.upstream is not None and config.upstream.status_api is not None
    limits = config.upstream.status_api.limits
    assert (limits.max_connections, limits.header_timeout, limits.keepalive_timeout,
            limits.body_timeout) == (64, 5.0, 15.0, 10.0)
    assert (limits.max_header_size, limits.max_headers, limits.max_body_size) == (
        8192, 32, 65536)
    problems = errors_of("""
upstream:
  http: {url: 'https://x.example/wo'}
  status_api:
    token: 0123456789abcdef
    limits: {max_connections: 0, header_timeout: 2m, max_body_size: 1GiB, max_header_size: 16KiB}
""")
    text = "\n".join(problems)
    assert "upstream.status_api.limits.max_connections" in text
    assert "upstream.status_api.limits.header_timeout" in text
    assert "upstream.status_api.limits.max_body_size" in text
    assert "max_header_size" not in text and len(problems) == 3


def test_a_category_override_must_fit_its_priority() -> None:
    problems = errors_of("""
work_orders:
  categories:
    fire_alarm: {resolve_within: 10m}
""")
    assert any("categories.fire_alarm" in p and "pre_alerts" in p for p in problems)
    assert any("category 'Fire'" in p for p in errors_of(
        "work_orders: {categories: {Fire: {}}}\n"))
    assert any("priority 'P7'" in p for p in errors_of(
        "work_orders: {priorities: {P7: {}}}\n"))
