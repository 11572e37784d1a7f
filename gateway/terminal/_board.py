"""The alarm board as terminal text: an aligned table in the site's time zone, in Chinese or
English, that fits the terminal's width.

* **Alignment by display width**: a Chinese character takes two columns
  (``unicodedata.east_asian_width`` W or F), a combining mark none; cells are cut with ``…``
  at a column boundary, never in the middle of a wide character.
* **Text from the gateway is shown, not obeyed**: names and messages come from site configs and
  devices, so a control character (a terminal escape) in one is replaced before it reaches the
  terminal.
* **Narrow terminals** (an SSH session at 80 columns): when one line per alarm would cut the
  message short, each alarm takes two lines: its status on the first, where and what on the
  second.

Pure functions of (board, site, now): the caller decides when to draw.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from gateway.i18n import format_location

__all__ = ["Lang", "Style", "board_lines", "clean", "display_width", "event_line", "fit",
           "label", "summary_line", "terminal_size", "terminal_style", "title_line"]

Lang = Literal["zh", "en"]

_LABELS: dict[str, tuple[str, str]] = {  # key: (zh, en)
    "pri": ("级别", "PRI"),
    "state": ("状态", "STATE"),
    "alarm": ("报警编号", "ALARM"),
    "since": ("发生时间", "SINCE"),
    "age": ("持续", "AGE"),
    "esc": ("升级", "ESCALATION"),
    "respond": ("到场倒计时", "RESPOND"),
    "location": ("位置", "LOCATION"),
    "device": ("设备", "DEVICE"),
    "message": ("内容", "MESSAGE"),
    "late": ("超时", "late"),
    "none": ("当前无报警", "no active alarms"),
    "alarms": ("报警 {n} 条", "{n} alarm(s)"),
    "unacked": ("未确认 {n}", "unacknowledged {n}"),
    "flood": ("报警泛滥：自 {since} 起新增 {counted} 条，合并 {grouped} 条（P0/P1 仍逐条显示）",
              "ALARM FLOOD since {since}: {counted} new, {grouped} grouped (P0/P1 still shown "
              "one by one)"),
    "more": ("… 另有 {n} 条未显示（{mix}），请加大窗口或用 propgw alarms list",
             "… {n} more not shown ({mix}); enlarge the window or use propgw alarms list"),
    "quit": ("按 q 或 Ctrl-C 退出", "q or Ctrl-C: quit"),
    # ISA-18.2 states
    "active_unacknowledged": ("未确认", "UNACK"),
    "active_acknowledged": ("已确认", "ACKED"),
    "returned_unacknowledged": ("已恢复未确认", "RTN UNACK"),
    "latched": ("锁存待复位", "LATCHED"),
    "normal": ("正常", "normal"),
    "shelved": ("已搁置", "SHELVED"),
    "suppressed": ("已抑制", "SUPPRESSED"),
    "out_of_service": ("已停用", "OUT OF SVC"),
    # work-order states that end the countdown
    "on_site": ("已到场", "on site"),
    "resolved": ("已解决", "resolved"),
    "rejected": ("已拒绝", "rejected"),
    "alarm_cleared": ("报警已恢复", "cleared"),
}
_COUNTING = frozenset({"open", "acknowledged"})
_HIDDEN = frozenset({"shelved", "suppressed", "out_of_service"})
_UNACKED = frozenset({"active_unacknowledged", "returned_unacknowledged"})
_ELLIPSIS = "…"
_SEP = "  "


@dataclass(frozen=True)
class Style:
    """ANSI SGR codes per priority and for emphasis; ``Style.plain()`` has none."""

    priority: Mapping[str, str]
    attention: str
    hidden: str
    late: str
    banner: str
    header: str
    reset: str

    @classmethod
    def ansi(cls) -> Style:
        return cls(priority={"P0": "\x1b[1;31m", "P1": "\x1b[31m", "P2": "\x1b[33m",
                             "P3": ""},
                   attention="\x1b[7m", hidden="\x1b[2m", late="\x1b[1;7m",
                   banner="\x1b[1;97;41m", header="\x1b[1m", reset="\x1b[0m")

    @classmethod
    def plain(cls) -> Style:
        return cls(priority={}, attention="", hidden="", late="", banner="", header="",
                   reset="")

    def paint(self, code: str, text: str) -> str:
        return f"{code}{text}{self.reset}" if code and self.reset else text


def label(key: str, lang: Lang, **values: Any) -> str:
    """A label in ``lang``; unknown keys (a state this version does not know) as they are."""
    pair = _LABELS.get(key)
    text = key if pair is None else pair[0 if lang == "zh" else 1]
    return text.format(**values) if values else text


def clean(text: object) -> str:
    """``text`` on one line with anything a terminal would obey (escapes, line breaks,
    bidirectional overrides) replaced by ``?``; other spaces (U+3000) become plain ones."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else " " if unicodedata.category(ch) == "Zs"
                   else "?" for ch in text)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal."""
    return sum(_char_width(ch) for ch in text)


def fit(text: str, width: int, *, align: Literal["left", "right"] = "left") -> str:
    """``text`` cut (with ``…``) or padded to exactly ``width`` columns."""
    size = display_width(text)
    if size > width:
        out, used = [], 0
        for ch in text:
            w = _char_width(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        text, size = "".join(out) + _ELLIPSIS, used + 1
    pad = " " * (width - size)
    return pad + text if align == "right" else text + pad


def title_line(site: Mapping[str, Any], tz: ZoneInfo, now: float) -> str:
    """``propgw · 测试小区 (cs) · 2026-12-05 14:02:11 CST +0800``."""
    when = dt.datetime.fromtimestamp(now, tz=tz).strftime("%Y-%m-%d %H:%M:%S %Z %z")
    return f"propgw · {clean(site.get('name', ''))} ({clean(site.get('id', ''))}) · {when}"


def terminal_size(out: TextIO) -> os.terminal_size:
    """The size of the terminal ``out`` is, asked of the terminal itself: ``$COLUMNS`` and
    ``$LINES`` (which :func:`shutil.get_terminal_size` prefers) are the shell's snapshot and
    go stale when the window is resized."""
    try:
        return os.get_terminal_size(out.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size()


def terminal_style(out: TextIO) -> Style:
    """Colours for a terminal that has them (and no ``NO_COLOR``), none otherwise."""
    if out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        return Style.ansi()
    return Style.plain()


def summary_line(board: Mapping[str, Any], lang: Lang) -> str:
    """``3 alarm(s) · P0 1 · P1 2 · unacknowledged 2``."""
    alarms = board.get("alarms", [])
    parts = [label("alarms", lang, n=len(alarms))]
    mix = _mix(alarms)
    if mix:
        parts.append(mix)
    unacked = sum(1 for a in alarms if a.get("state") in _UNACKED)
    if unacked:
        parts.append(label("unacked", lang, n=unacked))
    return " · ".join(parts)


def board_lines(board: Mapping[str, Any], *, tz: ZoneInfo, now: float, lang: Lang,
                width: int | None, height: int | None = None,
                style: Style | None = None) -> list[str]:
    """The board's flood banner, table header and rows.

    Args:
        board: ``GET /api/v1/alarms``.
        tz: The site's time zone.
        now: Epoch seconds (ages and countdowns are relative to it).
        lang: Language of labels and messages.
        width: Terminal columns; None: no limit (a pipe or a file).
        height: Lines available; rows that do not fit are summed up in one last line.
        style: Colours; default none.
    """
    style = style or Style.plain()
    lines: list[str] = []
    flood = board.get("flood")
    if flood:
        since = _clock(_from_epoch(flood.get("started")), tz, now)
        text = label("flood", lang, since=since, counted=flood.get("counted", 0),
                     grouped=flood.get("grouped", 0))
        lines.append(style.paint(style.banner, fit(text, width) if width else text))
    alarms = list(board.get("alarms", []))
    if not alarms:
        lines.append(label("none", lang))
        return lines
    rows = [_cells(a, tz=tz, now=now, lang=lang) for a in alarms]
    table = _Table(rows, lang, width)
    lines.append(style.paint(style.header, table.header()))
    room = None if height is None else max(1, height - len(lines))
    for i, (alarm, row) in enumerate(zip(alarms, rows, strict=True)):
        drawn = table.row(row, alarm, style)
        if room is not None and len(drawn) > room - (1 if i < len(alarms) - 1 else 0):
            rest = alarms[i:]
            more = label("more", lang, n=len(rest), mix=_mix(rest))
            lines.append(fit(more, width) if width else more)
            break
        lines.extend(drawn)
        if room is not None:
            room -= len(drawn)
    return lines


def event_line(kind: str, data: Any, *, tz: ZoneInfo, now: float, lang: Lang) -> str:
    """One line for one live-feed event (the watch's line mode, for pipes and logs)."""
    stamp = dt.datetime.fromtimestamp(now, tz=tz).isoformat(timespec="seconds")
    if kind == "alarm" and isinstance(data, Mapping):
        alarm = data.get("alarm") or {}
        parts = [stamp, "alarm", clean(alarm.get("priority", "-")), clean(data.get("alarm_id")),
                 clean(data.get("transition") or "-"),
                 label(str(alarm.get("state", "-")), lang)]
        if data.get("actor"):
            parts.append(f"by {clean(data['actor'])}")
        if alarm:
            row = _cells(alarm, tz=tz, now=now, lang=lang)
            parts += ["|", row["location"], "|", row["device"], "|", row["message"]]
        if data.get("reason"):
            parts += ["|", clean(data["reason"])]
        return " ".join(parts)
    if kind == "work_order" and isinstance(data, Mapping):
        parts = [stamp, "work_order", clean(data.get("priority", "-")), clean(data.get("id")),
                 clean(data.get("status", "-")), clean(data.get("event", "-")),
                 f"alarm {clean(data.get('alarm_id', '-'))}"]
        esc = data.get("escalation")
        if isinstance(esc, Mapping):
            name = esc.get("name") or {}
            parts.append(f"L{esc.get('level')}/{esc.get('levels')} "
                         f"{clean(name.get(lang) or esc.get('role', ''))}")
        if data.get("respond_by"):
            parts.append(f"respond_by {_clock(_parse(data['respond_by']), tz, now)}")
        return " ".join(parts)
    detail = data.get("reason", "") if isinstance(data, Mapping) else ""
    return f"{stamp} {clean(kind)} {clean(detail)}".rstrip()


# --------------------------------------------------------------------------- helpers


#: The alarm id comes last of these: in two-line mode it gets what the line has left, so the
#: id an action needs is rarely cut.
_FIXED = ("pri", "state", "since", "age", "respond", "esc", "alarm")
_FLEX = ("location", "device", "message")
_RIGHT = frozenset({"age", "respond"})
#: Below this many columns for the message, one line per alarm is not worth it.
_MIN_MESSAGE = 16
_CAPS = {"location": 18, "device": 12}
#: ``L2/4…``: the escalation level survives shrinking.
_MIN_ESCALATION = 5


class _Table:
    """Column widths for a set of rows: one line per alarm when the message keeps a useful
    width, else two (status first, then where and what). In two-line mode the alarm id (what an
    action needs) gets what the first line has left after shrinking the escalation to its
    level; if it still does not fit, it opens the second line instead, whole."""

    def __init__(self, rows: list[dict[str, str]], lang: Lang, width: int | None) -> None:
        self.lang = lang
        self.width = width
        natural = {k: max(display_width(label(k, lang)), *(display_width(r[k]) for r in rows))
                   for k in (*_FIXED, *_FLEX)}
        self.widths = dict(natural)
        self.first: tuple[str, ...] = (*_FIXED, *_FLEX)
        self.second: tuple[str, ...] = ()
        if width is None or _total(natural.values()) <= width:
            return
        for key, cap in _CAPS.items():
            self.widths[key] = min(natural[key], max(cap, display_width(label(key, lang))))
        rest = width - _total(self.widths[k] for k in (*_FIXED, *_FLEX) if k != "message")
        if rest >= _MIN_MESSAGE:
            self.widths["message"] = rest
            return
        self.first, self.second = _FIXED, _FLEX
        room = width - _total(natural[k] for k in _FIXED if k != "alarm") - len(_SEP)
        short = max(display_width(label("esc", lang)), _MIN_ESCALATION)
        if natural["alarm"] > room and natural["esc"] > short:
            self.widths["esc"] = max(short, natural["esc"] - (natural["alarm"] - room))
            room += natural["esc"] - self.widths["esc"]
        if natural["alarm"] > room:
            self.widths["esc"] = natural["esc"]
            self.first, self.second = _FIXED[:-1], ("alarm", *_FLEX)

    def header(self) -> str:
        return self._line({k: label(k, self.lang) for k in self.first}, "", Style.plain())

    def row(self, row: dict[str, str], alarm: Mapping[str, Any], style: Style) -> list[str]:
        state = alarm.get("state", "")
        code = style.hidden if state in _HIDDEN else style.priority.get(alarm.get("priority", ""),
                                                                         "")
        marks = {"state": style.attention if state in _UNACKED else "",
                 "respond": style.late if row["respond"].startswith(label("late", self.lang))
                 else ""}
        first = self._line(row, code, style, marks)
        if not self.second:
            return [first]
        indent = " " * (self.widths["pri"] + len(_SEP))
        second = " · ".join(row[k] for k in self.second if row[k])
        if self.width is not None:
            second = fit(second, self.width - len(indent)).rstrip()
        return [first, indent + style.paint(code, second)]

    def _line(self, cells: Mapping[str, str], code: str, style: Style,
              marks: Mapping[str, str] | None = None) -> str:
        texts = [fit(cells[k], self.widths[k], align="right" if k in _RIGHT else "left")
                 for k in self.first]
        while texts and not texts[-1].strip():  # no painted blanks at the end of a line
            texts.pop()
        if texts:
            texts[-1] = texts[-1].rstrip()
        parts = []
        for key, text in zip(self.first, texts, strict=False):
            mark = (marks or {}).get(key, "")
            parts.append(style.paint(code, style.paint(mark, text) if mark else text))
        return _SEP.join(parts)


def _total(widths: Iterable[int]) -> int:
    widths = list(widths)
    return sum(widths) + len(_SEP) * (len(widths) - 1)


def _cells(alarm: Mapping[str, Any], *, tz: ZoneInfo, now: float, lang: Lang
           ) -> dict[str, str]:
    activated = _parse(alarm.get("activated_at") or alarm.get("condition_since"))
    order = alarm.get("work_order") or {}
    message = alarm.get("message") or {}
    return {
        "pri": clean(alarm.get("priority", "")),
        "state": label(str(alarm.get("state", "")), lang),
        "alarm": clean(alarm.get("alarm_id", "")),
        "since": _clock(activated, tz, now),
        "age": _age(now - activated) if activated is not None else "",
        "esc": _escalation(order, lang),
        "respond": _countdown(order, now, lang),
        "location": clean(_location(alarm.get("location") or {}, lang)),
        "device": clean(alarm.get("device_name") or alarm.get("device", "")),
        "message": clean(message.get(lang) or message.get("en", "")),
    }


def _location(loc: Mapping[str, Any], lang: Lang) -> str:
    return format_location({k: v for k, v in loc.items() if isinstance(v, str)}, lang)


def _escalation(order: Mapping[str, Any], lang: Lang) -> str:
    level = order.get("escalation_level")
    if level is None:
        return ""
    name = order.get("escalation_name") or {}
    who = name.get(lang) or order.get("escalation_role") or ""
    return clean(f"L{level}/{order.get('escalation_levels', '?')} {who}".rstrip())


def _countdown(order: Mapping[str, Any], now: float, lang: Lang) -> str:
    if not order:
        return ""
    status = str(order.get("status", ""))
    if status not in _COUNTING:
        return label(status, lang)
    due = _parse(order.get("respond_by"))
    if due is None:
        return ""
    left = due - now
    if left >= 0:
        return _hms(left)
    return f"{label('late', lang)} {_hms(-left)}"


def _hms(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _age(seconds: float) -> str:
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _clock(ts: float | None, tz: ZoneInfo, now: float) -> str:
    """``14:02:11`` today (in the site's zone), ``12-04 14:02`` another day."""
    if ts is None:
        return ""
    when = dt.datetime.fromtimestamp(ts, tz=tz)
    if when.date() == dt.datetime.fromtimestamp(now, tz=tz).date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%m-%d %H:%M")


def _parse(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _from_epoch(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else _parse(value)


def _mix(alarms: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for a in alarms:
        key = clean(a.get("priority", "?"))
        counts[key] = counts.get(key, 0) + 1
    return " · ".join(f"{p} {n}" for p, n in sorted(counts.items()))


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200d":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
