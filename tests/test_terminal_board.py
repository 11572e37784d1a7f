"""The terminal board's pure parts: display widths, cutting, escapes, the table at 80 columns
and wide, countdowns and ages in the site's zone, event lines, the SSE parser, and where the
console is according to a site config."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import load_config_text
from gateway.terminal import (
    SiteProblem,
    Style,
    board_lines,
    clean,
    console_url,
    display_width,
    event_line,
    fit,
    load_site,
    parse_sse,
    summary_line,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 2026-12-05 14:00:00 in Shanghai.
NOW = dt.datetime(2026, 12, 5, 14, 0, tzinfo=SHANGHAI).timestamp()
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def iso(seconds_from_now: float) -> str:
    return dt.datetime.fromtimestamp(NOW + seconds_from_now, tz=dt.UTC).isoformat()


def alarm(alarm_id: str, priority: str, state: str, *, since: float, message: str,
          order: dict[str, Any] | None = None, device: str = "1号梯",
          location: dict[str, str | None] | None = None) -> dict[str, Any]:
    return {"alarm_id": alarm_id, "priority": priority, "state": state,
            "activated_at": iso(since), "device": "E1", "device_name": device,
            "location": location or {"building": "1", "floor": "3", "zone": "东区",
                                     "room": None},
            "message": {"zh": message, "en": f"en: {message}"}, "work_order": order}


def order(respond_in: float, *, status: str = "open", level: int = 2) -> dict[str, Any]:
    return {"id": "wo-1", "status": status, "respond_by": iso(respond_in),
            "escalation_level": level, "escalation_levels": 4, "escalation_role": "patrol",
            "escalation_name": {"zh": "巡逻保安", "en": "Patrol"}}


BOARD: dict[str, Any] = {"alarms": [
    alarm("trapped@E1", "P0", "active_unacknowledged", since=-65, message="电梯困人，请立即处理",
          order=order(235)),
    alarm("door_held_open@door-B2-17", "P1", "returned_unacknowledged", since=-7500,
          message="门长时间未关闭", order=order(-30), device="地下车库B2-17号门"),
    alarm("tamper@W1", "P3", "shelved", since=-3 * 86400 - 4 * 3600, message="传感器被拆",
          order=None, location={"building": None, "floor": None, "zone": None, "room": None}),
], "flood": None}


def plain(line: str) -> str:
    return _ANSI.sub("", line)


def test_widths_count_terminal_columns() -> None:
    assert display_width("abc") == 3
    assert display_width("电梯困人") == 8
    assert display_width("ＡＢ") == 4, "full-width Latin"
    assert display_width("e\u0301") == 1, "a combining accent takes no column"
    assert fit("电梯困人", 5) == "电梯…"
    assert fit("电梯困人", 4) == "电… ", "never half a wide character"
    assert fit("ab", 5, align="right") == "   ab"
    assert display_width(fit("地下车库B2-17号门", 9)) == 9


def test_text_from_the_gateway_cannot_drive_the_terminal() -> None:
    assert clean("\x1b[2J1号梯") == "?[2J1号梯"
    assert clean("a\nb\rc\td") == "a?b?c?d"
    assert clean("\u202eevil") == "?evil", "no bidirectional override"
    assert clean("东区\u3000A") == "东区 A"
    hostile = {"alarms": [alarm("x@E1", "P2", "active_unacknowledged", since=-1,
                                message="\x1b]0;pwned\x07", device="\x1b[31mred")],
               "flood": None}
    lines = board_lines(hostile, tz=SHANGHAI, now=NOW, lang="zh", width=None)
    assert not any("\x1b" in line or "\x07" in line for line in lines)


def test_80_columns_gives_two_lines_per_alarm_and_nothing_wider() -> None:
    short = {"alarms": BOARD["alarms"][:1] + BOARD["alarms"][2:], "flood": None}
    lines = board_lines(short, tz=SHANGHAI, now=NOW, lang="zh", width=80)
    assert all(display_width(line) <= 80 for line in lines), lines
    assert lines[0].split() == ["级别", "状态", "发生时间", "持续", "到场倒计时", "升级", "报警编号"]
    assert lines[1].split() == ["P0", "未确认", "13:58:55", "1m05s", "03:55", "L2/4", "巡逻保安",
                                "trapped@E1"]
    assert lines[2] == "      1号楼 3层 东区 · 1号梯 · 电梯困人，请立即处理", \
        "under the state column"
    assert lines[3].split() == ["P3", "已搁置", "12-02", "10:00", "3d04h", "tamper@W1"], \
        "another day: the date"
    assert lines[4].strip() == "位置未配置 · 1号梯 · 传感器被拆"
    header = lines[0]
    for title, row, cell in (("状态", lines[1], "未确认"), ("状态", lines[3], "已搁置"),
                             ("报警编号", lines[1], "trapped@E1"),
                             ("报警编号", lines[3], "tamper@W1")):
        assert display_width(row[:row.index(cell)]) == display_width(header[:header.index(title)])


def test_a_long_alarm_id_is_never_cut() -> None:
    lines = board_lines(BOARD, tz=SHANGHAI, now=NOW, lang="zh", width=80)
    assert all(display_width(line) <= 80 for line in lines), lines
    assert "报警编号" not in lines[0], "the ids go to the second lines"
    assert lines[3].split() == ["P1", "已恢复未确认", "11:55:00", "2h05m", "超时", "00:30",
                                "L2/4", "巡逻保安"]
    assert lines[4].strip().startswith("door_held_open@door-B2-17 · 1号楼 3层 东区 · 地下车库")
    wider = board_lines(BOARD, tz=SHANGHAI, now=NOW, lang="zh", width=100)
    assert wider[3].split()[-1] == "door_held_open@door-B2-17"

    duty = order(235)
    duty["escalation_name"] = {"zh": "值班物业经理", "en": "Property manager on duty"}
    one = {"alarms": [alarm("door_held_open@door-B2-17", "P1", "active_unacknowledged",
                            since=-5, message="m", order=duty)], "flood": None}
    english = board_lines(one, tz=SHANGHAI, now=NOW, lang="en", width=80)
    assert display_width(english[1]) <= 80
    assert english[1].split()[-1] == "door_held_open@door-B2-17", \
        "the escalation's name gives way to the id"
    assert "L2/4 Property ma…  door_held_open" in english[1]


def test_a_wide_terminal_gives_one_line_per_alarm_in_english() -> None:
    lines = board_lines(BOARD, tz=SHANGHAI, now=NOW, lang="en", width=200)
    assert len(lines) == 4 and all(display_width(line) <= 200 for line in lines)
    assert lines[0].split() == ["PRI", "STATE", "SINCE", "AGE", "RESPOND", "ESCALATION", "ALARM",
                                "LOCATION", "DEVICE", "MESSAGE"]
    assert re.match(r"P1\s+RTN UNACK\s+11:55:00\s+2h05m\s+late 00:30\s+L2/4 Patrol\s+"
                    r"door_held_open@door-B2-17\s+Bldg 1, floor 3, zone East\s+地下车库B2-17号门\s+"
                    r"en: 门长时间未关闭$", lines[2]), lines[2]
    assert "location not set" in lines[3]


def test_a_short_terminal_sums_up_what_does_not_fit() -> None:
    lines = board_lines(BOARD, tz=SHANGHAI, now=NOW, lang="zh", width=80, height=4)
    assert len(lines) == 4
    assert lines[-1].startswith("… 另有 2 条未显示（P1 1 · P3 1）")


def test_colours_add_no_width_and_mark_what_needs_attention() -> None:
    styled = board_lines(BOARD, tz=SHANGHAI, now=NOW, lang="en", width=80, style=Style.ansi())
    bare = board_lines(BOARD, tz=SHANGHAI, now=NOW, lang="en", width=80)
    assert [plain(line) for line in styled] == bare
    assert "\x1b[1;31m" in styled[1] and "\x1b[7m" in styled[1], "P0 red, unacknowledged reversed"
    assert "\x1b[1;7m" in styled[3], "a missed respond_by stands out"
    assert "\x1b[2m" in styled[5], "shelved is dimmed"


def test_countdown_states_summary_and_flood() -> None:
    board = {"alarms": [alarm("a@E1", "P0", "active_acknowledged", since=-5, message="m",
                              order=order(3725)),
                        alarm("b@E1", "P1", "latched", since=-5, message="m",
                              order=order(100, status="on_site"))],
             "flood": {"started": NOW - 120, "counted": 23, "grouped": 18}}
    lines = board_lines(board, tz=SHANGHAI, now=NOW, lang="en", width=None)
    assert lines[0] == ("ALARM FLOOD since 13:58:00: 23 new, 18 grouped (P0/P1 still shown one "
                        "by one)")
    assert re.search(r"ACKED\s+13:59:55\s+5s\s+1:02:05\s", lines[2])
    assert re.search(r"LATCHED\s+13:59:55\s+5s\s+on site\s", lines[3])
    assert summary_line(board, "zh") == "报警 2 条 · P0 1 · P1 1"
    assert summary_line(BOARD, "en") == "3 alarm(s) · P0 1 · P1 1 · P3 1 · unacknowledged 2"
    assert board_lines({"alarms": [], "flood": None}, tz=SHANGHAI, now=NOW, lang="zh",
                       width=80) == ["当前无报警"]


def test_event_lines() -> None:
    data = {"alarm_id": "trapped@E1", "transition": "acknowledged", "actor": "wang",
            "reason": "已通知\n维保", "alarm": BOARD["alarms"][0]}
    assert event_line("alarm", data, tz=SHANGHAI, now=NOW, lang="zh") == (
        "2026-12-05T14:00:00+08:00 alarm P0 trapped@E1 acknowledged 未确认 by wang | "
        "1号楼 3层 东区 | 1号梯 | 电梯困人，请立即处理 | 已通知?维保")
    work_order = {"id": "wo-1", "priority": "P0", "status": "open", "event": "escalated",
                  "alarm_id": "trapped@E1", "respond_by": iso(300),
                  "escalation": {"level": 2, "levels": 4, "role": "patrol",
                                 "name": {"zh": "巡逻保安", "en": "Patrol"}}}
    assert event_line("work_order", work_order, tz=SHANGHAI, now=NOW, lang="en") == (
        "2026-12-05T14:00:00+08:00 work_order P0 wo-1 open escalated alarm trapped@E1 "
        "L2/4 Patrol respond_by 14:05:00")
    assert event_line("resync", {"reason": "too far behind"}, tz=SHANGHAI, now=NOW,
                      lang="en") == "2026-12-05T14:00:00+08:00 resync too far behind"


async def test_sse_parser() -> None:
    async def lines(*items: str) -> AsyncIterator[str]:
        for item in items:
            yield item

    stream = lines("retry: 1000", "", ": keep-alive", "", "id: b-1", "event: alarm",
                   'data: {"a":', "data: 1}", "", "event: ignored-without-data", "",
                   "id: b-2", "data:no space", "unknown: x", "", "id: b-\0", "data: x", "")
    events = [e async for e in parse_sse(stream)]
    assert [(e.id, e.kind, e.data) for e in events] == [
        ("b-1", "alarm", '{"a":\n1}'), ("b-2", "message", "no space"),
        ("b-2", "message", "x")], "an id with NUL is ignored, the last one stays"
    assert events[0].json() == {"a": 1}


SITE = """
site: {{id: s1, name: 测试, gateway_id: gw1}}
{console}
"""


@pytest.mark.parametrize(("console", "url"), [
    ("console: {}", "http://127.0.0.1:8480"),
    ('console: {host: "0.0.0.0", port: 9000}', "http://127.0.0.1:9000"),
    ('console: {host: "::", port: 9000}', "http://[::1]:9000"),
    ('console: {host: "fd00::1", port: 9000}', "http://[fd00::1]:9000"),
    ("console: {host: gw.example, cert_file: c.pem, key_file: k.pem}",
     "https://gw.example:8480"),
])
def test_console_url_from_the_site_config(console: str, url: str) -> None:
    config = load_config_text(SITE.format(console=console))
    assert console_url(config, Path("site.yaml")) == url


@pytest.mark.parametrize(("console", "message"), [
    ("", "site.yaml has no console: section"),
    ("console: {enabled: false}", "switches it off (console.enabled: false)"),
    ("console: {port: 0}", "pass --url with the port it logged"),
])
def test_no_console_to_talk_to(console: str, message: str) -> None:
    config = load_config_text(SITE.format(console=console))
    with pytest.raises(SiteProblem, match=re.escape(message)):
        console_url(config, Path("site.yaml"))


def test_unset_secrets_do_not_stop_the_terminal_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROPGW_TEST_UNSET", raising=False)
    file = tmp_path / "site.yaml"
    file.write_text(SITE.format(console="console: {}") + (
        'upstream:\n  http: {url: "http://127.0.0.1:9/x"}\n'
        '  status_api: {token: "${PROPGW_TEST_UNSET}"}\n'), encoding="utf-8")
    config = load_site(file)
    assert console_url(config, file) == "http://127.0.0.1:8480"
