"""Point topics: subscription filters, MQTT matching, captured placeholders, device ids."""

from __future__ import annotations

import pytest

from drivers.mqtt import TopicPattern, expand_device_id, is_template


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("site/door/{door}/state", "site/door/+/state"),
        ("b/{building}/lift/{car}", "b/+/lift/+"),
        ("fire/+/zone/#", "fire/+/zone/#"),
        ("plain/topic", "plain/topic"),
        ("#", "#"),
        ("{a}", "+"),
    ],
)
def test_filter_turns_placeholders_into_plus(template: str, expected: str) -> None:
    assert TopicPattern.compile(template).filter == expected


def test_placeholders_are_captured_by_name() -> None:
    pattern = TopicPattern.compile("b/{building}/lift/{car}/status")
    assert pattern.names == ("building", "car")
    assert pattern.match("b/3/lift/A/status") == {"building": "3", "car": "A"}
    assert pattern.match("b/3/lift/A/other") is None
    assert pattern.match("b/3/lift/A") is None
    assert pattern.match("b/3/lift/A/status/extra") is None


def test_literal_topic_matches_only_itself() -> None:
    pattern = TopicPattern.compile("fire/panel/1")
    assert pattern.match("fire/panel/1") == {}
    assert pattern.match("fire/panel/2") is None
    assert pattern.match("fire/panel") is None


def test_plus_matches_one_level_including_an_empty_one() -> None:
    pattern = TopicPattern.compile("a/+/c")
    assert pattern.match("a/b/c") == {}
    assert pattern.match("a//c") == {}
    assert pattern.match("a/b/x/c") is None


def test_placeholder_must_capture_a_non_empty_level() -> None:
    assert TopicPattern.compile("a/{id}/c").match("a//c") is None


@pytest.mark.parametrize(
    ("topic", "matches"),
    [
        ("fire/p1/zone", True),  # '#' also matches the parent level (MQTT 3.1.1 §4.7.1.2)
        ("fire/p1/zone/3", True),
        ("fire/p1/zone/3/smoke/raw", True),
        ("fire/p1/zon", False),
        ("fire/zone/3", False),
    ],
)
def test_hash_matches_any_number_of_trailing_levels(topic: str, matches: bool) -> None:
    pattern = TopicPattern.compile("fire/{panel}/zone/#")
    result = pattern.match(topic)
    assert (result is not None) is matches
    if matches:
        assert result == {"panel": "p1"}


def test_wildcards_at_the_first_level_skip_dollar_topics() -> None:
    assert TopicPattern.compile("#").match("$SYS/broker/uptime") is None
    assert TopicPattern.compile("+/x").match("$SYS/x") is None
    assert TopicPattern.compile("$SYS/#").match("$SYS/broker/uptime") == {}


@pytest.mark.parametrize("template", ["a/b{c}/d", "a/b+/c", "a/#/b", "a/{x}/{x}"])
def test_malformed_templates_are_rejected(template: str) -> None:
    with pytest.raises(ValueError, match=r"topic level|last level|twice"):
        TopicPattern.compile(template)


def test_device_id_expands_from_captured_levels() -> None:
    pattern = TopicPattern.compile("site/door/{door}/state")
    assert expand_device_id("door-{door}", pattern.match("site/door/7/state") or {}) == "door-7"
    assert expand_device_id("door-{door}", pattern.match("site/door/B2-east/state") or {}) \
        == "door-B2-east"
    assert expand_device_id("panel", {}) == "panel"


@pytest.mark.parametrize("level", ["bad id", "x" * 70, "门1", "-lead"])
def test_device_id_from_an_unsafe_topic_level_is_rejected(level: str) -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        expand_device_id("{door}", {"door": level})


def test_device_id_needs_every_placeholder() -> None:
    with pytest.raises(ValueError, match=r"no value for \{door\}"):
        expand_device_id("door-{door}", {"other": "1"})


def test_is_template() -> None:
    assert is_template("door-{door}")
    assert not is_template("door-1")
