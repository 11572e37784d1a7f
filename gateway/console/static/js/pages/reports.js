// Reported repairs (报事报修), for operators: the form that logs one (a resident's call, a
// patrol's finding, a walk-in) and the reports of the last week with their progress. The
// category grades a report (its priority is shown before sending); an operator may change the
// priority with a reason. A report becomes a work order like an alarm's: clicking one opens it.

import { h, fill, rebuild } from "../dom.js";
import { t, tOr, pick, fmtPlace, fmtDateTime } from "../i18n.js";
import * as store from "../store.js";
import { api, errorText, newKey } from "../api.js";
import { field } from "../dialogs.js";
import { priorityBadge, table, toast, dash, PRIORITIES } from "../ui.js";
import { assignmentText } from "../dispatch.js";

const HOURS = 168;

export function mount(view) {
  const form = h("form", { class: "report-form card", id: "report-form", novalidate: true },
    h("h2", {}, t("reports.new")), h("p", { class: "muted" }, t("board.loading")));
  const listBox = h("div", { id: "reports-list" }, h("p", { class: "muted" }, t("board.loading")));
  fill(view, h("section", { class: "page" },
    h("h1", {}, t("reports.title")),
    h("div", { class: "report-layout" }, form, listBox)));

  let catalogue = null;   // {categories: [{id, title, priority}], channels}
  let devices = [];
  let key = newKey();     // one per report: a second click or a retry is the same order
  let busy = false;
  let gone = false;
  let timer = null;
  let lastLogged = null;

  async function loadForm() {
    let cats = null;
    let devs = null;
    try {
      [cats, devs] = await Promise.all([api("GET", "/api/v1/report-categories"),
        api("GET", "/api/v1/devices")]);
    } catch { /* below */ }
    if (gone) return;
    if (!cats || !cats.ok) {
      fill(form, h("h2", {}, t("reports.new")), h("p", { class: "login-error" },
        cats ? errorText(cats) : t("err.unreachable")));
      return;
    }
    catalogue = cats.data;
    devices = devs && devs.ok ? devs.data.devices : [];
    buildForm();
  }

  function category() {
    const id = form.elements.category?.value;
    return catalogue.categories.find((c) => c.id === id) || null;
  }

  function buildForm() {
    const error = h("p", { class: "dialog-error", id: "report-error", role: "alert",
      hidden: true });
    const graded = h("div", { class: "graded", id: "report-graded", "aria-live": "polite" });
    const reason = field({ name: "priority_reason", label: t("reports.priority_reason"),
      type: "textarea", maxlength: 2000, hint: t("reports.priority_reason_hint") });
    const submit = h("button", { type: "submit", class: "btn btn-primary btn-wide",
      id: "report-submit" }, t("reports.submit"));
    fill(form,
      h("h2", {}, t("reports.new")),
      h("div", { class: "field-row" },
        field({ name: "category", label: t("field.category"), type: "select", required: true,
          value: "", options: [["", t("reports.choose")], ...catalogue.categories.map((c) =>
            [c.id, `${pick(c.title)} · ${c.priority}`])] }),
        field({ name: "channel", label: t("reports.channel"), type: "select", value: "phone",
          options: catalogue.channels.map((c) => [c, tOr(`channel.${c}`, c)]) })),
      graded,
      h("fieldset", { class: "place" }, h("legend", {}, t("field.location")),
        h("div", { class: "field-row" },
          field({ name: "building", label: t("reports.building"), maxlength: 100 }),
          field({ name: "floor", label: t("reports.floor"), maxlength: 100 }),
          field({ name: "room", label: t("reports.room"), maxlength: 100 })),
        field({ name: "device", label: t("reports.device"), type: "select", value: "",
          options: [["", t("reports.no_device")], ...devices.map((d) => [d.id,
            `${d.name} (${d.id})${pick(d.location_text) ? ` · ${pick(d.location_text)}` : ""}`])],
          hint: t("reports.place_hint") })),
      field({ name: "description", label: t("reports.description"), type: "textarea",
        required: true, maxlength: 2000 }),
      h("div", { class: "field-row" },
        field({ name: "reporter", label: t("reports.reporter"), maxlength: 200,
          autocomplete: "off" }),
        field({ name: "contact", label: t("reports.contact"), maxlength: 200, type: "tel",
          autocomplete: "off", hint: t("reports.contact_hint") })),
      field({ name: "priority", label: t("reports.priority"), type: "select", value: "",
        options: [["", t("reports.as_graded")], ...PRIORITIES.map((p) =>
          [p, `${p} ${t(`prio.${p}`)}`])] }),
      reason, error, submit);
    const onChange = () => updateGraded(graded, reason);
    form.elements.category.addEventListener("change", onChange);
    form.elements.priority.addEventListener("change", onChange);
    onChange();
  }

  /** Shows the category's priority and asks for a reason when the operator changes it. */
  function updateGraded(graded, reason) {
    const cat = category();
    const chosen = form.elements.priority.value;
    const changed = cat !== null && chosen !== "" && chosen !== cat.priority;
    fill(graded, cat ? [h("span", { class: "muted" }, t("reports.graded")), " ",
      priorityBadge(cat.priority), changed ? [" → ", priorityBadge(chosen)] : null]
      : h("span", { class: "muted" }, t("reports.graded_hint")));
    graded.dataset.priority = cat ? (changed ? chosen : cat.priority) : "";
    reason.hidden = !changed;
    form.elements.priority_reason.required = changed;
    form.elements.priority.options[0].text = cat
      ? t("reports.as_graded_p", { p: `${cat.priority} ${t(`prio.${cat.priority}`)}` })
      : t("reports.as_graded");
  }

  function body() {
    const value = (name) => {
      const v = form.elements[name].value.trim();
      return v === "" ? null : v;
    };
    const cat = category();
    const priority = value("priority");
    const changed = priority !== null && cat !== null && priority !== cat.priority;
    return {
      category: value("category"), channel: value("channel") || "phone",
      description: value("description"), building: value("building"),
      floor: value("floor"), room: value("room"), device: value("device"),
      reporter: value("reporter"), contact: value("contact"),
      priority: changed ? priority : null,
      priority_reason: changed ? value("priority_reason") : null,
    };
  }

  async function send() {
    if (busy || !catalogue) return;
    const error = form.querySelector("#report-error");
    error.hidden = true;
    if (!form.reportValidity()) return;
    busy = true;
    const submit = form.querySelector("#report-submit");
    submit.disabled = true;
    let answer = null;
    try {
      answer = await api("POST", "/api/v1/reports", body(), { "Idempotency-Key": key });
    } catch { /* unreachable: the same key makes a retry safe */ }
    busy = false;
    submit.disabled = false;
    if (gone) return;
    if (!answer || !answer.ok) {
      error.textContent = answer ? t("reports.refused", { reason: errorText(answer) })
        : t("err.unreachable");
      error.hidden = false;
      return;
    }
    const order = answer.data;
    key = newKey();
    lastLogged = order.id;
    toast(t("reports.logged", { title: pick(order.title), p: order.priority }));
    form.reset();
    form.elements.category.dispatchEvent(new Event("change"));
    form.elements.category.focus();
    loadList();
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });

  async function loadList() {
    clearTimeout(timer);
    let answer = null;
    try {
      answer = await api("GET", `/api/v1/reports?scope=recent&hours=${HOURS}&limit=200`);
    } catch { /* below */ }
    if (gone) return;
    if (!answer || !answer.ok) {
      fill(listBox, h("p", { class: "login-error" },
        answer ? errorText(answer) : t("err.unreachable")));
      return;
    }
    const orders = answer.data.orders;
    rebuild(listBox, h("h2", { class: "section-head" }, t("reports.list",
      { d: HOURS / 24, n: orders.length })),
    orders.length ? table([t("field.priority"), t("reports.col_report"), t("field.location"),
      t("reports.reporter"), t("field.status"), t("orders.escalation"), t("reports.col_logged")],
    orders.map((o) => reportRow(o, o.id === lastLogged)), { className: "orders reports" })
      : h("p", { class: "empty-small", id: "reports-none" }, t("reports.none")));
  }

  loadForm();
  loadList();
  const stop = store.subscribe((topic) => {
    if (topic !== "orders") return;
    clearTimeout(timer);
    timer = setTimeout(loadList, 500);  // a report's order changed (escalated, answered…)
  });
  return () => { gone = true; clearTimeout(timer); stop(); };
}

function reportRow(order, fresh) {
  const rep = order.report || {};
  const override = rep.priority_override;
  const esc = order.escalation;
  return h("tr", { "data-order-id": order.id, class: ["prio-row", `prio-${order.priority}`,
    fresh && "fresh"] },
  h("td", {}, priorityBadge(order.priority)),
  h("td", {},
    h("a", { href: `#/orders/${encodeURIComponent(order.id)}`, class: "order-link",
      "data-focus-key": `order-${order.id}` }, pick(order.title)),
    h("div", { class: "muted small" }, pick(order.description)),
    override ? h("div", { class: "small override" }, t("reports.override", {
      by: override.by, graded: override.graded, reason: override.reason })) : null),
  h("td", {}, fmtPlace(order) || "—",
    h("div", { class: "muted small" }, order.location?.device_name || "")),
  h("td", {}, rep.reporter || dash(), rep.contact ? h("div", { class: "small" },
    rep.contact) : null,
  h("div", { class: "muted small" }, tOr(`channel.${rep.channel}`, rep.channel || ""))),
  h("td", {}, h("span", { class: ["wo-state", `wo-${order.status}`] },
    tOr(`wo.status.${order.status}`, order.status)),
  order.assigned_to ? h("div", { class: "small" }, assignmentText(order.assigned_to))
    : null),
  h("td", {}, esc ? h("span", {}, h("span", { class: "wo-level" },
    t("wo.level", { n: esc.level, of: esc.levels })), " ", pick(esc.name)) : dash()),
  h("td", { class: "nowrap" }, fmtDateTime(order.raised_at),
    h("div", { class: "muted small" }, t("reports.by", { who: rep.operator || "—" }))));
}
