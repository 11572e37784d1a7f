// Alarm KPIs over the last day, week or month (ISA-18.2 / EEMUA 191): alarms per hour,
// priority mix, the ten most frequent, standing and stale alarms, chattering, floods, and the
// operators' actions, as charts drawn here.

import { h, fill } from "../dom.js";
import { t, tOr, fmtNumber, fmtHour, fmtDateTime, fmtDuration, categoryTitle } from "../i18n.js";
import { api, errorText } from "../api.js";
import { barChart, hBars, shareBar } from "../charts.js";
import { priorityBadge, table, PRIORITIES } from "../ui.js";
import * as summary from "./summary.js";

const PERIODS = [24, 168, 720];
const HOUR = 3600;
/** A manageable rate for one operator (EEMUA 191 / ISA-18.2: about one alarm in 10 minutes). */
const TARGET_PER_HOUR = 6;
let chosen = 24;

/** The two views of the statistics page: alarm KPIs (#/kpi) and the month (#/kpi/month). */
function tabs(current) {
  return h("nav", { class: "tabs", "aria-label": t("kpi.views") },
    [["alarms", "#/kpi"], ["month", "#/kpi/month"]].map(([id, href]) => h("a", {
      href, id: `kpi-tab-${id}`, class: "tab", "aria-current": id === current ? "page" : null,
    }, t(`kpi.tab_${id}`))));
}

export function mount(view, ctx) {
  if (ctx && ctx.param === "month") {
    const box = h("div", { id: "summary-page" });
    fill(view, h("section", { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, t("sum.title")), tabs("month")), box));
    return summary.mount(box);
  }
  const box = h("div", { id: "kpi" }, h("p", { class: "muted" }, t("board.loading")));
  const periodButtons = PERIODS.map((hours) => h("button", { type: "button",
    class: ["btn", "btn-period"], "data-hours": hours, "aria-pressed": String(hours === chosen),
    onclick: () => { chosen = hours; select(); load(); } }, t(`kpi.period_${hours}`)));
  function select() {
    for (const b of periodButtons) b.setAttribute("aria-pressed", String(Number(b.dataset.hours) === chosen));
  }
  fill(view, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, t("kpi.title")), tabs("alarms"),
      h("div", { class: "period", role: "group", "aria-label": t("kpi.period") }, periodButtons)),
    box));
  let gone = false;

  async function load() {
    const hours = chosen;
    let answer = null;
    try { answer = await api("GET", `/api/v1/kpi?hours=${hours}`); } catch { /* below */ }
    if (gone || hours !== chosen) return;
    if (!answer || !answer.ok) {
      fill(box, h("p", { class: "login-error" }, answer ? errorText(answer) : t("err.unreachable")));
      return;
    }
    fill(box, render(answer.data, hours));
  }
  load();
  return () => { gone = true; };
}

/** Activations per hour for every hour of the period, the empty ones too. */
export function hourlySeries(report, hours) {
  const counts = new Map((report.hourly || []).map(([start, n]) => [Math.round(start), n]));
  const end = Math.floor(report.now / HOUR) * HOUR;
  const first = end - (hours - 1) * HOUR;
  const out = [];
  for (let start = first; start <= end; start += HOUR) {
    out.push({ start, value: counts.get(start) || 0 });
  }
  return out;
}

/** One bar of the hourly chart; labelled every 3 hours over a day or two, else at midnight. */
function axisPoint(p, hours) {
  const when = fmtHour(p.start * 1000);  // "MM-DD HH:mm", site time
  const hour = Number(when.slice(6, 8));
  const tick = hours <= 48 ? hour % 3 === 0 : hour === 0;
  return { value: p.value, title: `${when}: ${p.value}`, tick,
    label: hours <= 48 ? (hour === 0 ? when.slice(0, 5) : when.slice(6)) : when.slice(0, 5) };
}

function card(label, value, extra, id) {
  return h("div", { class: "stat", id }, h("div", { class: "stat-value" }, value),
    h("div", { class: "stat-label" }, label), extra ? h("div", { class: "stat-extra muted" }, extra) : null);
}

function alarmName(item) {
  return `${categoryTitle(item.category)} · ${item.alarm_id.split("@")[1] || item.alarm_id}`;
}

function render(r, hours) {
  const series = hourlySeries(r, hours);
  const mix = PRIORITIES.map((p) => ({ label: p, value: r.priority_mix?.[p] || 0,
    className: `fill-${p}` }));
  const actions = Object.entries(r.operator_actions || {}).sort((a, b) => b[1] - a[1]);
  const current = Object.entries(r.current || {}).filter(([, n]) => n > 0);
  return [
    h("div", { class: "stats" },
      card(t("kpi.activations"), fmtNumber(r.activations), t("kpi.new_incidents",
        { n: fmtNumber(r.new_incidents) }), "kpi-activations"),
      card(t("kpi.per_hour"), fmtNumber(r.per_hour, 1), t("kpi.per_day",
        { n: fmtNumber(r.per_day, 0) }), "kpi-rate"),
      card(t("kpi.peak_hour"), fmtNumber(r.peak_hour), r.peak_hour_start
        ? fmtHour(r.peak_hour_start * 1000) : "—", "kpi-peak"),
      card(t("kpi.flood_share"), `${fmtNumber((r.flood_share || 0) * 100, 1)}%`,
        t("kpi.floods_n", { n: (r.floods || []).length }), "kpi-flood"),
      card(t("kpi.standing"), fmtNumber(current.reduce((s, [, n]) => s + n, 0)),
        current.map(([s, n]) => `${tOr(`state.${s}`, s)} ${n}`).join(" · ") || "—",
        "kpi-current")),
    h("p", { class: "muted small" }, t("kpi.covered", { since: fmtDateTime(r.covered_from),
      h: fmtNumber(r.hours, 1) })),
    h("h2", { class: "section-head" }, t("kpi.hourly")),
    h("div", { class: "chart-box", id: "kpi-hourly" }, barChart({
      title: t("kpi.hourly"),
      points: series.map((p) => axisPoint(p, hours)),
      reference: TARGET_PER_HOUR, referenceLabel: t("kpi.target", { n: TARGET_PER_HOUR }),
    })),
    h("div", { class: "two-col" },
      h("div", {},
        h("h2", { class: "section-head" }, t("kpi.mix")),
        h("div", { class: "chart-box", id: "kpi-mix" }, shareBar({ parts: mix, title: t("kpi.mix") })),
        h("ul", { class: "legend" }, mix.map((m) => h("li", {}, priorityBadge(m.label), " ",
          fmtNumber(m.value))))),
      h("div", {},
        h("h2", { class: "section-head" }, t("kpi.actions")),
        actions.length ? h("div", { class: "chart-box", id: "kpi-actions" }, hBars({
          title: t("kpi.actions"),
          rows: actions.map(([k, n]) => ({ label: tOr(`tr.${k}`, k), value: n })) }))
          : h("p", { class: "muted" }, t("kpi.none")))),
    h("h2", { class: "section-head" }, t("kpi.top")),
    (r.top || []).length ? h("div", { class: "chart-box", id: "kpi-top" }, hBars({
      title: t("kpi.top"),
      rows: r.top.map((a) => ({ label: alarmName(a), value: a.count,
        className: `fill-${a.priority}`,
        text: `${a.count} (${fmtNumber(a.value * 100, 1)}%)` })) }))
      : h("p", { class: "muted" }, t("kpi.none")),
    h("div", { class: "two-col" },
      h("div", {}, h("h2", { class: "section-head" }, t("kpi.stale", {
        h: fmtDuration(r.stale_after) })),
      listTable(r.stale, (a) => fmtDuration(a.value), t("field.duration"), "kpi-stale")),
      h("div", {}, h("h2", { class: "section-head" }, t("kpi.chattering")),
        listTable(r.chattering, (a) => fmtNumber(a.count), t("kpi.count"), "kpi-chattering"))),
    h("h2", { class: "section-head" }, t("kpi.floods")),
    (r.floods || []).length ? table([t("kpi.flood_start"), t("kpi.flood_end"),
      t("kpi.flood_new"), t("kpi.flood_grouped")], r.floods.map((f) => h("tr", {},
      h("td", {}, fmtDateTime(f.started)), h("td", {}, f.ended ? fmtDateTime(f.ended)
        : t("kpi.flood_ongoing")),
      h("td", {}, fmtNumber(f.new_alarms)), h("td", {}, fmtNumber(f.grouped)))))
      : h("p", { class: "muted", id: "kpi-floods" }, t("kpi.none")),
  ];
}

function listTable(items, value, valueLabel, id) {
  if (!items || !items.length) return h("p", { class: "muted", id }, t("kpi.none"));
  return h("div", { id }, table([t("field.priority"), t("field.category"), t("field.alarm_id"),
    valueLabel], items.map((a) => h("tr", {}, h("td", {}, priorityBadge(a.priority)),
    h("td", {}, categoryTitle(a.category)), h("td", {}, h("code", {}, a.alarm_id)),
    h("td", {}, value(a))))));
}
