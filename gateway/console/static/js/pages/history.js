// History: the alarm journal, newest first, filtered by time, category, priority, alarm and
// text (device, location, message, operator, reason); paged; exported as CSV with the same
// filters.

import { h, fill } from "../dom.js";
import { t, tOr, pick, fmtPlace, fmtDateTime, categoryIds, categoryTitle } from "../i18n.js";
import { api, errorText } from "../api.js";
import { priorityBadge, table, PRIORITIES } from "../ui.js";
import { field } from "../dialogs.js";

const HOURS = [1, 8, 24, 72, 168, 720];
const PAGE = 100;

export function mount(view, ctx) {
  const form = h("form", { class: "filters", id: "history-filters" },
    field({ name: "hours", label: t("history.hours"), type: "select", value: "24",
      options: HOURS.map((n) => [String(n), t("history.last_hours", { n })]) }),
    field({ name: "category", label: t("field.category"), type: "select", value: "",
      options: [["", t("history.any")], ...categoryIds().map((c) => [c, categoryTitle(c)])] }),
    field({ name: "priority", label: t("field.priority"), type: "select", value: "",
      options: [["", t("history.any")], ...PRIORITIES.map((p) => [p, `${p} ${t(`prio.${p}`)}`])] }),
    field({ name: "alarm_id", label: t("field.alarm_id"), value: ctx.param || "", maxlength: 200 }),
    field({ name: "text", label: t("history.text"), maxlength: 200,
      hint: t("history.text_hint") }),
    h("div", { class: "filter-buttons" },
      h("button", { type: "submit", class: "btn btn-primary", id: "history-search" },
        t("btn.search")),
      h("a", { class: "btn", id: "history-csv", href: "/api/v1/history.csv", download: "" },
        t("history.csv"))));
  const results = h("div", { id: "history-results" });
  const more = h("button", { type: "button", class: "btn", id: "history-more", hidden: true },
    t("history.more"));
  const status = h("p", { class: "muted", id: "history-status", role: "status" });
  fill(view, h("section", { class: "page" }, h("h1", {}, t("history.title")), form, status,
    results, more));

  let rows = [];
  let lastSeq = null;
  let gone = false;

  function filters() {
    const q = new URLSearchParams();
    for (const name of ["hours", "category", "priority", "alarm_id", "text"]) {
      const value = form.elements[name].value.trim();
      if (value) q.set(name, value);
    }
    return q;
  }

  function updateCsv() {
    form.querySelector("#history-csv").href = `/api/v1/history.csv?${filters()}`;
  }

  async function load(append) {
    const q = filters();
    q.set("limit", String(PAGE));
    if (append && lastSeq !== null) q.set("before_seq", String(lastSeq));
    status.textContent = t("board.loading");
    let answer = null;
    try { answer = await api("GET", `/api/v1/history?${q}`); } catch { /* below */ }
    if (gone) return;
    if (!answer || !answer.ok) {
      status.textContent = answer ? errorText(answer) : t("err.unreachable");
      return;
    }
    const events = answer.data.events;
    rows = append ? rows.concat(events) : events;
    lastSeq = events.length ? events[events.length - 1].seq : lastSeq;
    more.hidden = !answer.data.more;
    status.textContent = t("history.count", { n: rows.length });
    fill(results, rows.length ? table(
      [t("field.time"), t("field.priority"), t("field.location"), t("field.device"),
        t("field.category"), t("field.transition"), t("field.state"), t("field.actor"),
        t("field.reason")],
      rows.map(eventRow), { className: "history" }) : h("p", { class: "empty-small" },
      t("history.none")));
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); updateCsv(); load(false); });
  form.addEventListener("change", updateCsv);
  form.addEventListener("input", updateCsv);
  more.addEventListener("click", () => load(true));
  updateCsv();
  load(false);
  return () => { gone = true; };
}

function eventRow(e) {
  return h("tr", { "data-seq": e.seq },
    h("td", { class: "nowrap" }, fmtDateTime(e.ts)),
    h("td", {}, priorityBadge(e.priority)),
    h("td", {}, fmtPlace(e) || "—"),
    h("td", {}, e.device_name),
    h("td", {}, categoryTitle(e.category), h("div", { class: "muted small" }, pick(e.message))),
    h("td", {}, tOr(`tr.${e.transition}`, e.transition || "—")),
    h("td", {}, e.lifecycle ? tOr(`state.${e.lifecycle}`, e.lifecycle) : "—"),
    h("td", {}, e.actor === "system" ? t("history.system") : e.actor),
    h("td", { class: "reason" }, e.reason));
}
