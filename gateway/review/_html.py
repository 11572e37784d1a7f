"""The review and the summary as self-contained HTML pages that print cleanly on A4.

No external assets (no fonts, scripts or images to fetch): the pages work offline, in the
control room and in a mail attachment. The font stack names the CJK system fonts the console
uses. To get a PDF, print the page to PDF from the browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from gateway.i18n import language
from gateway.review._labels import duration
from gateway.review._model import Count, IncidentReview, MonthlySummary, TimeStats, WindowStats
from gateway.workorders import Bilingual

__all__ = ["review_html", "summary_html"]

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Hiragino Sans GB",
  "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
  "Noto Sans", sans-serif; font-size: 11pt; line-height: 1.45; color: #111; background: #fff; }
body { margin: 0 auto; max-width: 190mm; padding: 8mm 6mm; }
h1 { font-size: 17pt; margin: 0 0 2mm; }
h2 { font-size: 13pt; margin: 6mm 0 2mm; border-bottom: 0.4mm solid #333; }
h3 { font-size: 11pt; margin: 3mm 0 1mm; }
.sub { color: #444; margin: 0 0 4mm; }
table { width: 100%; border-collapse: collapse; margin: 0 0 3mm; }
th, td { text-align: left; vertical-align: top; padding: 1.2mm 1.6mm;
  border-bottom: 0.2mm solid #bbb; }
th { background: #eee; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
.nowrap { white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.8mm 4mm; margin: 0; }
dl.facts dt { color: #444; } dl.facts dd { margin: 0; }
.v-met { color: #0a6b2e; font-weight: 600; }
.v-breached, .v-overdue { color: #b00020; font-weight: 700; }
.v-pending, .v-none { color: #555; }
.kind { font-size: 9pt; color: #555; white-space: nowrap; }
.ev { font-size: 9pt; color: #333; }
.note { border: 0.3mm dashed #888; padding: 2mm 3mm; color: #444; }
.p0 { color: #b00020; font-weight: 700; } .p1 { color: #a65b00; font-weight: 700; }
footer { margin-top: 6mm; font-size: 9pt; color: #666; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; }
  thead { display: table-header-group; }
  tr, dl.facts, .note { break-inside: avoid; }
  h2 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

_WORDS: dict[str, tuple[str, str]] = {
    "review": ("事后复盘", "Incident review"),
    "summary": ("月度服务汇总", "Monthly service summary"),
    "facts": ("概况", "Overview"),
    "order": ("工单号", "Work order"),
    "alarm": ("告警", "Alarm"),
    "category": ("类别", "Category"),
    "priority": ("级别", "Priority"),
    "location": ("位置", "Location"),
    "device": ("设备", "Device"),
    "status": ("状态", "Status"),
    "detected": ("首次检测", "First detected"),
    "raised": ("告警触发", "Alarm raised"),
    "closed": ("关闭", "Closed"),
    "evidence": ("触发告警的读数", "Readings that raised the alarm"),
    "point": ("点位", "Point"),
    "value": ("值", "Value"),
    "windows": ("响应时限", "Response windows"),
    "window": ("时限", "Window"),
    "due": ("截止", "Due"),
    "done": ("达成", "Reached"),
    "took": ("用时", "Took"),
    "verdict": ("结论", "Verdict"),
    "timeline": ("时间线", "Timeline"),
    "time": ("时间", "Time"),
    "what": ("事件", "What"),
    "who": ("人员", "Who"),
    "detail": ("说明", "Detail"),
    "generated": ("生成时间", "Generated"),
    "tz": ("时区", "Time zone"),
    "none": ("无", "none"),
    "orders": ("工单", "Orders"),
    "incidents": ("P0/P1 事件", "P0/P1 incidents"),
    "by_priority": ("按级别", "By priority"),
    "by_category": ("按类别", "By category"),
    "by_building": ("按楼栋", "By building"),
    "compliance": ("达标率", "Compliance"),
    "met": ("达标", "Met"),
    "breached": ("超时", "Breached"),
    "overdue": ("超时未达成", "Overdue"),
    "pending": ("进行中", "Pending"),
    "times": ("响应用时（自告警触发起）", "Response times (from the alarm being raised)"),
    "measure": ("指标", "Measure"),
    "count": ("数量", "Count"),
    "mean": ("平均", "Mean"),
    "p90": ("P90", "P90"),
    "incident_list": ("P0/P1 事件列表", "P0/P1 incidents"),
    "reports": ("报事报修", "Reported repairs"),
    "follow_ups": ("回访满意度", "Follow-up satisfaction"),
    "reports_logged": ("报事工单", "Reports logged"),
    "by_channel": ("按来源", "By channel"),
    "fu_calls": ("回访次数", "Calls recorded"),
    "fu_reached": ("已联系上", "Reached"),
    "fu_satisfied": ("满意", "Satisfied"),
    "fu_unsatisfied": ("不满意（工单重开）", "Unsatisfied (order reopened)"),
    "fu_not_reached": ("未联系上", "Not reached"),
    "fu_waiting": ("待回访工单", "Orders awaiting follow-up"),
    "fu_overdue": ("其中逾期", "Of which overdue"),
    "fu_rate": ("满意率（满意 / 已联系上）", "Satisfaction (satisfied / reached)"),
    "print": ("打印或另存为 PDF：使用浏览器的“打印”功能。",
              "To print or save as PDF, use the browser's Print command."),
}

_STATUS: dict[str, tuple[str, str]] = {
    "open": ("待确认", "open"), "alarm_cleared": ("告警已恢复，待确认", "alarm cleared, open"),
    "acknowledged": ("已接单", "acknowledged"), "on_site": ("已到场", "on site"),
    "resolved": ("已完成", "resolved"), "rejected": ("已退回", "rejected"),
}

_KINDS: dict[str, tuple[str, str]] = {
    "detected": ("检测", "detection"), "alarm": ("告警", "alarm"),
    "operator": ("操作员", "operator"), "work_order": ("工单", "work order"),
    "escalation": ("升级", "escalation"), "platform": ("平台", "platform"),
    "on_site": ("到场", "on site"), "resolved": ("完成", "resolved"),
    "window": ("时限", "window"), "assigned": ("派单", "dispatch"),
    "console": ("中控室", "console"), "follow_up": ("回访", "follow-up"),
    "reopened": ("重开", "reopened"),
}


def review_html(review: IncidentReview, lang: str = "zh-CN") -> str:
    """One incident's review as a printable page in ``lang`` (zh-CN or en).

    Raises:
        ValueError: ``lang`` is not a supported language.
    """
    p = _Page(lang)
    title = f"{p.w('review')}：{p.t(review.title)}" if p.zh else \
        f"{p.w('review')}: {p.t(review.title)}"
    facts = [("order", review.order_id), ("alarm", ", ".join([review.alarm_id,
                                                              *review.joined_alarms])),
             ("category", p.t(review.category_title)), ("priority", review.priority),
             ("location", p.t(review.location)), ("device", review.device),
             ("status", p.status(review.status)), ("detected", _when(review.detected_at)),
             ("raised", _when(review.raised_at)),
             ("closed", _when(review.closed_at) if review.closed_at else "—"),
             ("tz", review.timezone)]
    out = [p.head(title),
           f"<h1>{escape(title)}</h1>",
           f'<p class="sub">{escape(review.site_name)} · {escape(p.t(review.description))}</p>',
           f"<h2>{p.w('facts')}</h2>", '<dl class="facts">',
           *(f"<dt>{p.w(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts), "</dl>",
           f"<h2>{p.w('evidence')}</h2>",
           p.table(["point", "value"], ([escape(k), escape(_value(v))]
                                        for k, v in review.evidence.items()),
                   num=frozenset({1}), css="evidence"),
           f"<h2>{p.w('windows')}</h2>",
           p.table(["window", "due", "done", "took", "verdict"], (
               [f'<span class="nowrap">{escape(p.t(v.name))}</span>',
                _clock(v.due, review.raised_at), _clock(v.done_at, review.raised_at),
                escape(duration(v.took_s, p.lang) if v.took_s is not None else "—"),
                f'<span class="v-{v.verdict}">{escape(p.verdict(v.verdict, v.margin_s))}'
                f"</span>"] for v in review.windows), css="windows"),
           f"<h2>{p.w('timeline')}</h2>",
           p.table(["time", "what", "who", "detail"], (
               [_clock(e.at, review.raised_at),
                f'<span class="kind">{escape(p.kind(e.kind))}</span> {escape(p.t(e.what))}'
                + (f'<div class="ev">{escape(_evidence(e.evidence))}</div>'
                   if e.evidence else ""),
                escape(e.actor or ""), escape(e.detail or "")]
               for e in review.timeline), time_col=True, css="timeline"),
           f"<footer>{p.w('generated')}: {escape(review.generated_at)} "
           f"({escape(review.timezone)}) · propgw · {p.w('print')}</footer>",
           "</body></html>"]
    return "\n".join(out)


def summary_html(summary: MonthlySummary, lang: str = "zh-CN") -> str:
    """The monthly summary as a printable page in ``lang`` (zh-CN or en).

    Raises:
        ValueError: ``lang`` is not a supported language.
    """
    p = _Page(lang)
    title = f"{summary.site_name} {p.w('summary')} {summary.month}"
    out = [p.head(title), f"<h1>{escape(title)}</h1>",
           f'<p class="sub">{p.w("orders")}: {summary.orders} · {p.w("incidents")}: '
           f'{summary.incidents} · {p.w("tz")}: {escape(summary.timezone)}</p>']
    for key, counts in (("by_priority", summary.by_priority),
                        ("by_category", summary.by_category),
                        ("by_building", summary.by_building)):
        out += [f"<h2>{p.w(key)}</h2>", p.counts(counts)]
    out += [f"<h2>{p.w('windows')}</h2>", p.window_stats(summary.windows),
            f"<h2>{p.w('times')}</h2>", p.time_stats(summary.times),
            f"<h2>{p.w('incident_list')}</h2>",
            p.table(["raised", "priority", "what", "status", "breached"], (
                [escape(_when(i.raised_at)),
                 f'<span class="{i.priority.lower()}">{i.priority}</span>',
                 escape(p.t(i.title)), escape(p.status(i.status)),
                 escape(", ".join(i.breaches) or "—")] for i in summary.incident_list),
                time_col=True, css="incidents")]
    rep, fol = summary.reports, summary.follow_ups
    out += [f"<h2>{p.w('reports')}</h2>",
            f'<p class="sub" data-section="reports">{p.w("reports_logged")}: {rep.reports}</p>',
            *(f"<h3>{p.w(key)}</h3>{p.counts(counts)}" for key, counts in (
                ("by_category", rep.by_category), ("by_building", rep.by_building),
                ("by_channel", rep.by_channel)) if counts),
            f"<h2>{p.w('follow_ups')}</h2>",
            p.table(["measure", "count"], (
                [p.w(key), str(value)] for key, value in (
                    ("fu_calls", fol.calls), ("fu_reached", fol.reached),
                    ("fu_satisfied", fol.satisfied), ("fu_unsatisfied", fol.unsatisfied),
                    ("fu_not_reached", fol.not_reached), ("fu_waiting", fol.waiting),
                    ("fu_overdue", fol.overdue),
                    ("fu_rate", f"{fol.satisfaction:.0%}" if fol.satisfaction is not None
                     else "—"))), num=frozenset({1}), css="follow-ups")]
    out += [f"<footer>{p.w('generated')}: {escape(summary.generated_at)} · propgw · "
            f"{p.w('print')}</footer>", "</body></html>"]
    return "\n".join(out)


class _Page:
    def __init__(self, lang: str) -> None:
        self.lang = language(lang)
        self.zh = self.lang == "zh-CN"

    def w(self, key: str) -> str:
        zh, en = _WORDS[key]
        return escape(zh if self.zh else en)

    def t(self, text: Bilingual) -> str:
        return text.zh if self.zh else text.en

    def kind(self, kind: str) -> str:
        zh, en = _KINDS[kind]
        return zh if self.zh else en

    def status(self, status: str) -> str:
        zh, en = _STATUS.get(status, (status, status))
        return zh if self.zh else en

    def verdict(self, verdict: str, margin: float | None) -> str:
        span = duration(margin, self.lang) if margin is not None else ""
        if self.zh:
            return {"met": f"达标（提前 {span}）", "breached": f"超时 {span}",
                    "overdue": f"已超时 {span}，未达成", "pending": f"进行中（剩余 {span}）",
                    "none": "不适用"}[verdict]
        return {"met": f"met ({span} to spare)", "breached": f"breached by {span}",
                "overdue": f"overdue by {span}, not reached",
                "pending": f"pending ({span} left)", "none": "n/a"}[verdict]

    def head(self, title: str) -> str:
        return (f'<!DOCTYPE html>\n<html lang="{self.lang}"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>")

    def table(self, columns: list[str], rows: Iterable[list[str]], *,
              num: frozenset[int] = frozenset(), time_col: bool = False, css: str = "") -> str:
        head = "".join(f'<th{" class=num" if i in num else ""}>{self.w(c) if c in _WORDS else c}'
                       f"</th>" for i, c in enumerate(columns))
        body = []
        for row in rows:
            cells = []
            for i, cell in enumerate(row):
                cls = "num" if i in num else "time" if time_col and i == 0 else ""
                cells.append(f'<td class="{cls}">{cell}</td>' if cls else f"<td>{cell}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        if not body:
            body.append(f'<tr><td colspan="{len(columns)}">{self.w("none")}</td></tr>')
        return (f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>'
                f"{''.join(body)}</tbody></table>")

    def counts(self, counts: list[Count]) -> str:
        return self.table(["what", "orders", "incidents"], (
            [escape(self.t(c.name)), str(c.orders), str(c.incidents)] for c in counts),
            num=frozenset({1, 2}))

    def window_stats(self, stats: list[WindowStats]) -> str:
        return self.table(["window", "met", "breached", "overdue", "pending", "compliance"], (
            [escape(self.t(s.name)), str(s.met), str(s.breached), str(s.overdue),
             str(s.pending), f"{s.compliance:.0%}" if s.compliance is not None else "—"]
            for s in stats), num=frozenset({1, 2, 3, 4, 5}))

    def time_stats(self, stats: list[TimeStats]) -> str:
        def span(value: float | None) -> str:
            return duration(value, self.lang) if value is not None else "—"
        return self.table(["measure", "count", "mean", "p90"], (
            [escape(self.t(s.name)), str(s.count), span(s.mean_s), span(s.p90_s)]
            for s in stats), num=frozenset({1, 2, 3}))


def _when(iso: str) -> str:
    """``2026-01-01T08:01:30+08:00`` → ``2026-01-01 08:01:30`` (the zone is in the header)."""
    return iso[:19].replace("T", " ")


def _clock(iso: str | None, raised: str) -> str:
    """The time of day alone on the day the alarm was raised, else date and time."""
    if iso is None:
        return "—"
    text = iso[11:19] if iso[:10] == raised[:10] else _when(iso)
    return f'<span class="nowrap">{escape(text)}</span>'


def _value(value: object) -> str:
    return "—" if value is None else str(value)


def _evidence(evidence: Mapping[str, object]) -> str:
    return ", ".join(f"{k} = {_value(v)}" for k, v in evidence.items())
