// The monthly summary (月度汇总) of work orders, part of the statistics page: a chosen month
// (site time zone) by priority, category and building; each response window's compliance;
// mean and 90th-percentile times; the P0/P1 incidents with their reviews; reported repairs and
// follow-up calls. The printable page (summary.html) is one click away.

import { h, fill } from "../dom.js";
import { t, tOr, pick, fmtNumber, fmtDateTime, fmtDuration, currentLang } from "../i18n.js";
import { api, errorText } from "../api.js";
import { priorityBadge, table, dash } from "../ui.js";

let chosen = null;  // "YYYY-MM"; null: the gateway's current month

function lang() { return currentLang() === "en" ? "en" : "zh-CN"; }

/** The printable summary of a month, in the page's language. */
export function summaryUrl(month) {
  const q = new URLSearchParams({ lang: lang() });
  if (month) q.set("month", month);
  return `/api/v1/incidents/summary.html?${q}`;
}

export function mount(box) {
  // Browsers without a month picker show a text box: the pattern says what to type.
  const monthInput = h("input", { type: "month", id: "summary-month", name: "month",
    required: true, placeholder: "YYYY-MM", pattern: "\\d{4}-\\d{2}" });
  const printLink = h("a", { class: "btn", id: "summary-print", href: summaryUrl(chosen),
    target: "_blank", rel: "noopener" }, t("sum.print"));
  const result = h("div", { id: "summary" }, h("p", { class: "muted" }, t("board.loading")));
  const form = h("form", { class: "filters", id: "summary-form" },
    h("div", { class: "field" }, h("label", { for: "summary-month" }, t("sum.month")),
      monthInput),
    h("div", { class: "filter-buttons" },
      h("button", { type: "submit", class: "btn btn-primary", id: "summary-show" },
        t("sum.show")), printLink));
  fill(box, form, result);
  let gone = false;
  let asked = 0;

  async function load() {
    const ask = ++asked;
    const q = chosen ? `?month=${encodeURIComponent(chosen)}` : "";
    let answer = null;
    try { answer = await api("GET", `/api/v1/incidents/summary${q}`); } catch { /* below */ }
    if (gone || ask !== asked) return;
    if (!answer || !answer.ok) {
      fill(result, h("p", { class: "login-error" }, answer ? errorText(answer)
        : t("err.unreachable")));
      return;
    }
    const s = answer.data;
    monthInput.value = s.month;
    printLink.href = summaryUrl(s.month);
    fill(result, render(s));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    chosen = monthInput.value;
    load();
  });
  load();
  return () => { gone = true; };
}

function stat(label, value, extra, id) {
  return h("div", { class: "stat", id }, h("div", { class: "stat-value" }, value),
    h("div", { class: "stat-label" }, label),
    extra ? h("div", { class: "stat-extra muted" }, extra) : null);
}

function percent(x) {
  return x === null || x === undefined ? "—" : `${fmtNumber(x * 100, 1)}%`;
}

function counts(rows, id, { badge = false } = {}) {
  if (!rows || !rows.length) return h("p", { class: "muted", id }, t("kpi.none"));
  return h("div", { id }, table([t("sum.key"), t("sum.count_orders"), t("sum.count_incidents")],
    rows.map((c) => h("tr", { "data-key": c.key },
      h("td", {}, badge ? priorityBadge(c.key) : pick(c.name) || c.key),
      h("td", {}, fmtNumber(c.orders)), h("td", {}, fmtNumber(c.incidents))))));
}

function render(s) {
  const compliance = (s.windows || []).map((w) => h("tr", { "data-window": w.window },
    h("td", {}, pick(w.name)), h("td", {}, fmtNumber(w.met)), h("td", {}, fmtNumber(w.breached)),
    h("td", {}, fmtNumber(w.overdue)), h("td", {}, fmtNumber(w.pending)),
    h("td", { class: "value" }, percent(w.compliance))));
  const times = (s.times || []).map((x) => h("tr", { "data-measure": x.measure },
    h("td", {}, pick(x.name)), h("td", {}, fmtNumber(x.count)),
    h("td", {}, x.mean_s === null ? "—" : fmtDuration(x.mean_s)),
    h("td", {}, x.p90_s === null ? "—" : fmtDuration(x.p90_s))));
  return [
    h("div", { class: "stats" },
      stat(t("sum.orders"), fmtNumber(s.orders), null, "sum-orders"),
      stat(t("sum.incidents"), fmtNumber(s.incidents), null, "sum-incidents"),
      s.reports && s.reports.available !== false ? stat(t("sum.reports"),
        fmtNumber(s.reports.reports), null, "sum-reports-n") : null,
      s.follow_ups && s.follow_ups.available !== false ? stat(t("sum.fu_satisfaction"),
        percent(s.follow_ups.satisfaction), t("sum.fu_of", { s: s.follow_ups.satisfied,
          n: s.follow_ups.reached }), "sum-satisfaction") : null,
      ...(s.windows || []).map((w) => stat(t("sum.compliance_of", { w: pick(w.name) }),
        percent(w.compliance), t("sum.met_of", { met: w.met,
          n: w.met + w.breached + w.overdue }), `sum-window-${w.window}`))),
    h("p", { class: "muted small" }, t("sum.generated", { month: s.month, tz: s.timezone,
      at: fmtDateTime(s.generated_at) })),
    h("div", { class: "two-col" },
      h("div", {}, h("h2", { class: "section-head" }, t("sum.windows")),
        compliance.length ? table([t("orders.window"), t("sum.met"), t("sum.breached"),
          t("sum.overdue"), t("sum.pending"), t("sum.compliance")], compliance,
        { className: "sum-windows" }) : h("p", { class: "muted" }, t("kpi.none"))),
      h("div", {}, h("h2", { class: "section-head" }, t("sum.times")),
        times.length ? table([t("sum.measure"), t("sum.count"), t("sum.mean"), t("sum.p90")],
          times, { className: "sum-times" }) : h("p", { class: "muted" }, t("kpi.none")))),
    h("div", { class: "three-col" },
      h("div", {}, h("h2", { class: "section-head" }, t("sum.by_priority")),
        counts(s.by_priority, "sum-by-priority", { badge: true })),
      h("div", {}, h("h2", { class: "section-head" }, t("sum.by_category")),
        counts(s.by_category, "sum-by-category")),
      h("div", {}, h("h2", { class: "section-head" }, t("sum.by_building")),
        counts(s.by_building, "sum-by-building"))),
    h("h2", { class: "section-head" }, t("sum.incident_list")),
    (s.incident_list || []).length ? table([t("field.priority"), t("orders.order"),
      t("orders.raised_at"), t("field.status"), t("orders.sla"), t("sum.review")],
    s.incident_list.map((i) => h("tr", { "data-order-id": i.order_id,
      class: `prio-row prio-${i.priority}` },
    h("td", {}, priorityBadge(i.priority)),
    h("td", {}, h("a", { href: `#/orders/${encodeURIComponent(i.order_id)}`,
      class: "order-link" }, pick(i.title))),
    h("td", { class: "nowrap" }, fmtDateTime(i.raised_at)),
    h("td", {}, tOr(`wo.status.${i.status}`, i.status)),
    h("td", {}, i.breaches.length ? h("span", { class: "breach" },
      i.breaches.map((w) => tOr(`sla.${w}`, w)).join(currentLang() === "zh" ? "、" : ", ")) : h("span", { class: "muted" },
      t("wo.no_breach"))),
    h("td", {}, h("a", { href: `/api/v1/incidents/${encodeURIComponent(i.order_id)}/review.html?lang=${lang()}`,
      target: "_blank", rel: "noopener", class: "review-link" }, t("sum.review_open"))))),
    { className: "sum-incidents" }) : h("p", { class: "muted", id: "sum-no-incidents" },
      t("kpi.none")),
    h("div", { class: "two-col" },
      h("div", { id: "sum-reports" }, h("h2", { class: "section-head" }, t("sum.reports")),
        reportsSection(s.reports)),
      h("div", { id: "sum-follow-ups" }, h("h2", { class: "section-head" }, t("sum.follow_ups")),
        followUpsSection(s.follow_ups))),
  ];
}

/** Reported repairs of the month: how many, by category, building and channel. */
function reportsSection(r) {
  if (!r) return dash();
  if (r.available === false) return h("p", { class: "muted" }, pick(r.note));
  return [
    h("p", { class: "sum-line" }, t("sum.reports_n", { n: fmtNumber(r.reports) })),
    [["by_category", r.by_category], ["by_building", r.by_building],
      ["by_channel", r.by_channel]].map(([key, rows]) => [
      h("h3", {}, t(`sum.${key}`)),
      rows && rows.length ? table([t("sum.key"), t("sum.count_orders")], rows.map((c) => h("tr",
        { "data-key": c.key }, h("td", {}, pick(c.name) || c.key),
        h("td", {}, fmtNumber(c.orders)))), { className: `sum-reports-${key}` })
        : h("p", { class: "muted" }, t("kpi.none"))]),
  ];
}

/** Follow-up calls of the month's orders, and the satisfaction. */
function followUpsSection(f) {
  if (!f) return dash();
  if (f.available === false) return h("p", { class: "muted" }, pick(f.note));
  const rows = [
    ["calls", fmtNumber(f.calls)], ["orders_followed_up", fmtNumber(f.orders_followed_up)],
    ["reached", fmtNumber(f.reached)], ["satisfied", fmtNumber(f.satisfied)],
    ["unsatisfied", fmtNumber(f.unsatisfied)], ["not_reached", fmtNumber(f.not_reached)],
    ["waiting", fmtNumber(f.waiting)], ["overdue", fmtNumber(f.overdue)],
    ["satisfaction", percent(f.satisfaction)],
  ];
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, t(`sum.fu_${k}`)),
    h("dd", { "data-key": k }, v)]));
}
