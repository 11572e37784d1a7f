// Work orders: the open ones (live), one order in detail with the platform's answers, its
// escalation and SLA breaches; every version and the recently closed orders when the gateway
// keeps a work-order history (`versions`, `recent` in the answers).

import { h, fill, rebuild } from "../dom.js";
import { t, tOr, pick, fmtPlace, fmtDateTime, fmtDuration, categoryTitle, currentLang }
  from "../i18n.js";
import * as store from "../store.js";
import { api, errorText } from "../api.js";
import { priorityBadge, countdown, table, dash, latchedBadge } from "../ui.js";
import { can } from "../actions.js";
import { DISPATCH, allowed, perform, roleNames, assignmentText } from "../dispatch.js";

const RESPONDING = new Set(["open", "acknowledged", "alarm_cleared"]);
const CLOSED = new Set(["resolved", "rejected"]);
const PRIORITY_ORDER = { P0: 0, P1: 1, P2: 2, P3: 3 };

export function mount(view, ctx) {
  return ctx.param ? mountDetail(view, ctx.param, ctx) : mountList(view);
}

function orderLink(order, text) {
  return h("a", { href: `#/orders/${encodeURIComponent(order.id)}`, class: "order-link",
    "data-focus-key": `order-${order.id}` }, text);
}

function escalationText(order) {
  const esc = order.escalation;
  if (!esc) return dash();
  return h("span", {}, h("span", { class: "wo-level" }, t("wo.level", { n: esc.level,
    of: esc.levels })), " ", pick(esc.name));
}

function statusCell(order) {
  return h("span", { class: ["wo-state", `wo-${order.status}`] },
    tOr(`wo.status.${order.status}`, order.status), latchedBadge(order.alarm_latched));
}

/** 已重新打开 ×2: an unsatisfied follow-up sent the order back to work. */
function reopenedTag(order) {
  return order.reopened_count ? h("span", { class: "tag tag-warn wo-reopened" },
    t("wo.reopened", { n: order.reopened_count })) : null;
}

function breachesCell(order) {
  const n = (order.breaches || []).length;
  return n ? h("span", { class: "breach" }, t("wo.breaches", { n })) : h("span",
    { class: "muted" }, t("wo.no_breach"));
}

function orderRow(order) {
  return h("tr", { "data-order-id": order.id, class: `prio-row prio-${order.priority}` },
    h("td", {}, priorityBadge(order.priority)),
    h("td", {}, orderLink(order, pick(order.title)),
      h("div", { class: "muted small" }, pick(order.description))),
    h("td", {}, fmtPlace(order) || "—",
      h("div", { class: "muted small" }, order.location?.device_name || "")),
    h("td", {}, statusCell(order), " ", reopenedTag(order),
      order.assigned_to ? h("div", { class: "small wo-assigned" },
        assignmentText(order.assigned_to)) : null),
    h("td", {}, escalationText(order),
      order.status === "open" && order.escalation ? h("div", { class: "small" },
        countdown(order.escalation.deadline, order.escalation.level < order.escalation.levels
          ? "cd.escalate" : "cd.resend")) : null),
    h("td", {}, RESPONDING.has(order.status) && !order.on_site_at
      ? countdown(order.respond_by, "cd.respond") : h("span", { class: "muted" },
        order.on_site_at ? fmtDateTime(order.on_site_at) : "—")),
    h("td", {}, breachesCell(order)),
    h("td", { class: "nowrap" }, fmtDateTime(order.raised_at)));
}

function sortOrders(list) {
  return [...list].sort((a, b) => (PRIORITY_ORDER[a.priority] - PRIORITY_ORDER[b.priority])
    || String(a.raised_at).localeCompare(String(b.raised_at)));
}

const RECENT_HOURS = 168;

function mountList(view) {
  const openBox = h("div", { id: "orders-open" });
  const recentBox = h("div", { id: "orders-recent" });
  fill(view, h("section", { class: "page" },
    h("h1", {}, t("orders.title")), openBox, recentBox));
  let recent = null;  // closed orders from the work-order history; null: not available
  let timer = null;
  let gone = false;

  const headers = () => [t("field.priority"), t("orders.order"), t("field.location"),
    t("field.status"), t("orders.escalation"), t("orders.respond_by"), t("orders.sla"),
    t("orders.raised_at")];

  function render() {
    const all = [...store.state.orders.values()];
    const open = sortOrders(all.filter((o) => !CLOSED.has(o.status)));
    rebuild(openBox, h("h2", { class: "section-head" }, t("orders.open", { n: open.length })),
      open.length ? table(headers(), open.map(orderRow), { className: "orders" })
        : h("p", { class: "empty-small" }, t("orders.none_open")));
    const closed = mergeRecent(recent, all.filter((o) => CLOSED.has(o.status)));
    if (closed === null) {
      fill(recentBox);
      return;
    }
    rebuild(recentBox, h("h2", { class: "section-head" }, t("orders.recent", {
      d: RECENT_HOURS / 24 })), closed.length
      ? table(headers(), closed.map(orderRow), { className: "orders orders-closed" })
      : h("p", { class: "empty-small" }, t("orders.none_closed")));
  }

  async function loadRecent() {
    let answer = null;
    try {
      answer = await api("GET", `/api/v1/work-orders?scope=recent&hours=${RECENT_HOURS}`);
    } catch { /* not shown */ }
    if (gone) return;
    recent = answer && answer.ok ? answer.data.orders.filter((o) => CLOSED.has(o.status))
      : null;
    render();
  }

  render();
  loadRecent();
  if (!store.state.loaded) store.readBoard();
  const stop = store.subscribe((topic) => {
    if (topic !== "orders") return;
    render();
    clearTimeout(timer);
    timer = setTimeout(loadRecent, 1000);  // an order may have closed
  });
  return () => { gone = true; clearTimeout(timer); stop(); };
}

/** Closed orders: the history's (when the gateway keeps one) and those closed meanwhile. */
function mergeRecent(recent, closedHere) {
  if (recent === null && closedHere.length === 0) return null;
  const byId = new Map();
  for (const o of [...(recent || []), ...closedHere]) {
    const had = byId.get(o.id);
    if (!had || o.seq > had.seq) byId.set(o.id, o);
  }
  return [...byId.values()].sort((a, b) => String(b.updated_at || b.raised_at)
    .localeCompare(String(a.updated_at || a.raised_at)));
}

/** The answer of GET /api/v1/work-orders/{id} in any of the shapes it may take: the order
 * itself, the order with `versions`, or `{latest|order, versions}`. */
export function unpackOrder(data) {
  if (!data || typeof data !== "object") return { order: null, versions: null };
  const order = data.latest || data.order || (data.id ? data : null);
  const versions = Array.isArray(data.versions) ? data.versions : null;
  return { order, versions };
}

/** The printable incident review (事后复盘) of an order, in the page's language. */
function reviewUrl(orderId) {
  const lang = currentLang() === "en" ? "en" : "zh-CN";
  return `/api/v1/incidents/${encodeURIComponent(orderId)}/review.html?lang=${lang}`;
}

function mountDetail(view, orderId, ctx) {
  const box = h("div", { id: "order-detail" }, h("p", { class: "muted" }, t("board.loading")));
  fill(view, h("section", { class: "page" },
    h("p", {}, h("a", { href: "#/orders", class: "back" }, t("orders.back")), " · ",
      h("a", { href: reviewUrl(orderId), target: "_blank", rel: "noopener",
               class: "review-link" }, t("orders.review"))), box));
  let order = store.state.orders.get(orderId) || null;
  let versions = null;
  let fetched = false;
  // The reporter's details as entered, for operators (who call back); the work-order routes
  // and the feed mask the contact. A report's details never change after it was logged.
  let report = null;

  function render() {
    if (!order) {
      fill(box, h("p", { class: "empty-small" }, fetched ? t("orders.not_found") : t("board.loading")));
      return;
    }
    const shown = report && order.report ? { ...order, report } : order;
    rebuild(box, detail(shown, versions, ctx, took));
  }

  /** An action's answer: the order as it is now (the feed brings the same, maybe later). */
  function took(newer) {
    if (!newer || !newer.id || (order && newer.seq <= order.seq)) return;
    if (versions && !versions.some((v) => v.seq === newer.seq)) versions = [...versions, newer];
    order = newer;
    render();
  }

  (async () => {
    try {
      const answer = await api("GET", `/api/v1/work-orders/${encodeURIComponent(orderId)}`);
      if (answer.ok) {
        const got = unpackOrder(answer.data);
        if (got.order && (!order || got.order.seq >= order.seq)) order = got.order;
        versions = got.versions;
        if (order && order.source === "report" && can(ctx.user.role, "operator")) {
          const full = await api("GET", `/api/v1/reports/${encodeURIComponent(orderId)}`);
          const entered = full.ok ? unpackOrder(full.data).order : null;
          if (entered && entered.report) report = entered.report;
        }
      } else if (answer.status !== 404 && !order) {
        fill(box, h("p", { class: "login-error" }, errorText(answer)));
        return;
      }
    } catch { /* shown below from what the page knows */ }
    fetched = true;
    render();
  })();
  render();
  return store.subscribe((topic) => {
    if (topic !== "orders") return;
    const newer = store.state.orders.get(orderId);
    if (newer && (!order || newer.seq > order.seq)) {
      if (versions && !versions.some((v) => v.seq === newer.seq)) versions = [...versions, newer];
      order = newer;
      render();
    }
  });
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined
    && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function timeWith(value, until, label) {
  if (!value) return null;
  return h("span", {}, fmtDateTime(value), until ? [" · ", countdown(value, label)] : null);
}

function detail(order, versions, ctx, took) {
  const esc = order.escalation;
  const answered = order.acknowledged_at || order.on_site_at || order.resolved_at
    || order.rejected_at || order.status_by || order.status_note;
  const names = roleNames(order, versions);
  const report = order.source === "report" ? order.report || {} : null;
  return [
    h("h1", { class: "order-title" }, priorityBadge(order.priority), " ", pick(order.title),
      reopenedTag(order)),
    dispatchCard(order, versions, ctx, took, names),
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("h2", {}, t("orders.overview")), facts([
        [t("field.status"), statusCell(order)],
        [t("orders.event"), tOr(`wo.event.${order.event}`, order.event)],
        [t("field.category"), categoryTitle(order.category)],
        [t("field.location"), fmtPlace(order) || "—"],
        [t("field.device"), order.location?.device ? `${order.location.device_name || ""} (${
          order.location.device})` : null],
        ...(report ? reportFacts(report) : [
          [t("field.alarm_id"), h("code", {}, order.alarm_id)],
          [t("orders.alarm_active"), order.alarm_latched
            ? h("span", {}, latchedBadge(true), " ", t("wo.latched.hint"))
            : order.alarm_active ? t("cond.active") : t("cond.returned")],
        ]),
        [t("field.message"), pick(order.description)],
        [t("orders.detected_at"), fmtDateTime(order.detected_at)],
        [t("orders.raised_at"), fmtDateTime(order.raised_at)],
        [t("orders.id"), h("code", {}, `${order.id} · #${order.seq}`)],
      ])),
      h("div", { class: "card" }, h("h2", {}, t("orders.escalation")), esc ? facts([
        [t("orders.level"), escalationText(order)],
        [t("orders.deadline"), timeWith(esc.deadline, order.status === "open",
          esc.level < esc.levels ? "cd.escalate" : "cd.resend")],
        [t("orders.escalated_at"), esc.escalated_at ? fmtDateTime(esc.escalated_at) : null],
      ]) : h("p", { class: "muted" }, "—"),
      h("h2", {}, t("orders.deadlines")), facts([
        [t("orders.acknowledge_by"), timeWith(order.acknowledge_by,
          order.status === "open", "cd.ack")],
        [t("orders.respond_by"), timeWith(order.respond_by,
          RESPONDING.has(order.status) && !order.on_site_at, "cd.respond")],
        [t("orders.resolve_by"), timeWith(order.resolve_by, !CLOSED.has(order.status),
          "cd.resolve")],
        [t("orders.follow_up_by"), order.follow_up_by ? fmtDateTime(order.follow_up_by) : null],
        [t("orders.follow_up_overdue_at"), order.follow_up_overdue_at
          ? fmtDateTime(order.follow_up_overdue_at) : null],
      ])),
      h("div", { class: "card", id: "platform-answer" }, h("h2", {}, t("orders.platform")),
        answered ? facts([
          [t("orders.status_via"), order.status_via ? h("span", { class: "status-via",
            "data-via": order.status_via }, tOr(`via.${order.status_via}`, order.status_via))
            : null],
          [t("wo.status.acknowledged"), order.acknowledged_at ? fmtDateTime(order.acknowledged_at) : null],
          [t("wo.status.on_site"), order.on_site_at ? fmtDateTime(order.on_site_at) : null],
          [t("wo.status.resolved"), order.resolved_at ? fmtDateTime(order.resolved_at) : null],
          [t("wo.status.rejected"), order.rejected_at ? fmtDateTime(order.rejected_at) : null],
          [t("orders.status_by"), order.status_by],
          [t("orders.status_note"), order.status_note],
        ]) : h("p", { class: "muted" }, t("orders.no_answer")))),
    h("h2", { class: "section-head" }, t("orders.sla")),
    (order.breaches || []).length ? table(
      [t("orders.window"), t("orders.due"), t("orders.reported"), t("orders.late_by")],
      order.breaches.map((b) => h("tr", { class: "breach-row" },
        h("td", {}, tOr(`sla.${b.window}`, b.window)), h("td", {}, fmtDateTime(b.due)),
        h("td", {}, fmtDateTime(b.at)), h("td", { class: "breach" }, fmtDuration(b.late_by_s)))))
      : h("p", { class: "muted" }, t("wo.no_breach")),
    followUps(order),
    (order.joined_alarms || []).length || order.related_to ? [
      h("h2", { class: "section-head" }, t("orders.related")),
      facts([[t("orders.joined"), (order.joined_alarms || []).join(", ")],
        [t("orders.related_to"), order.related_to ? orderLink({ id: order.related_to },
          order.related_to) : null]])] : null,
    Object.keys(order.evidence || {}).length ? [
      h("h2", { class: "section-head" }, t("field.evidence")),
      facts(Object.entries(order.evidence).map(([k, v]) => [k, String(v)]))] : null,
    versions ? [
      h("h2", { class: "section-head" }, t("orders.versions")),
      table([t("orders.seq"), t("field.time"), t("orders.event"), t("field.status"),
        t("orders.level")],
      [...versions].sort((a, b) => b.seq - a.seq).map((v) => h("tr", {},
        h("td", {}, `#${v.seq}`), h("td", { class: "nowrap" }, fmtDateTime(v.updated_at)),
        h("td", {}, tOr(`wo.event.${v.event}`, v.event)), h("td", {}, statusCell(v)),
        h("td", {}, v.escalation ? escalationText(v) : "—"))), { className: "versions" })]
      : null,
  ];
}

/** Who the order is assigned to, and (operators) the buttons that move it on: each enabled
 * only in the states that allow it; the gateway's refusal is shown in the dialog. */
function dispatchCard(order, versions, ctx, took, names) {
  const a = order.assigned_to;
  const canAct = ctx && can(ctx.user.role, "operator");
  const actions = [...DISPATCH, ...(allowed(order, "follow-up") ? ["follow-up"] : [])];
  return h("div", { class: "card dispatch", id: "dispatch" },
    h("h2", {}, t("dispatch.title")),
    facts([
      [t("dispatch.assigned_to"), a ? h("span", { class: "assigned", id: "assigned-to" },
        assignmentText(a, names)) : h("span", { class: "muted", id: "assigned-to" },
        t("dispatch.not_assigned"))],
      [t("dispatch.assign_note"), a && a.note ? a.note : null],
      [t("dispatch.assigned_by"), a ? t("dispatch.by_at", { who: a.by,
        at: fmtDateTime(a.at) }) : null],
    ]),
    canAct ? h("div", { class: "row-buttons dispatch-buttons", role: "group",
      "aria-label": t("dispatch.title") }, actions.map((action) => {
      const ok = allowed(order, action);
      return h("button", { type: "button", class: ["btn", action === "follow-up"
        ? "btn-primary" : "btn-action"], "data-dispatch": action,
        "data-focus-key": `dispatch-${action}`, disabled: !ok,
        title: ok ? null : t("dispatch.not_now", { status: tOr(`wo.status.${order.status}`,
          order.status) }),
        onclick: () => perform(order, action, { versions, done: took }) },
      t(`dispatch.${action}`));
    })) : null);
}

/** The follow-up calls made so far, and the reopenings they caused. */
function followUps(order) {
  const calls = order.follow_ups || [];
  if (!calls.length && !order.reopened_count) return null;
  const yes = (b) => (b === null || b === undefined ? "—" : b ? t("fu.yes") : t("fu.no"));
  return [
    h("h2", { class: "section-head" }, t("fu.history")),
    order.reopened_count ? h("p", { class: "warning", id: "reopened" }, t("fu.reopened", {
      n: order.reopened_count, at: fmtDateTime(order.reopened_at) })) : null,
    calls.length ? table([t("field.time"), t("field.actor"), t("fu.reached"),
      t("fu.satisfied"), t("field.comment")],
    calls.map((f) => h("tr", { class: f.reached && f.satisfied === false ? "fu-unsatisfied"
      : null },
    h("td", { class: "nowrap" }, fmtDateTime(f.at)), h("td", {}, f.by),
    h("td", {}, yes(f.reached)), h("td", {}, f.reached ? yes(f.satisfied) : "—"),
    h("td", { class: "reason" }, f.comment || ""))), { className: "follow-ups" }) : null,
  ];
}

/** What the operator logged about a reported repair. */
function reportFacts(rep) {
  const o = rep.priority_override;
  return [
    [t("orders.source"), t("orders.source_report")],
    [t("reports.channel"), tOr(`channel.${rep.channel}`, rep.channel || "")],
    [t("reports.reporter"), rep.reporter],
    [t("reports.contact"), rep.contact],
    [t("orders.logged_by"), rep.operator],
    [t("reports.priority"), o ? t("reports.override", { by: o.by, graded: o.graded,
      reason: o.reason }) : null],
  ];
}
