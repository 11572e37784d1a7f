// Follow-up calls (回访): the resolved orders whose follow-up is due (overdue ones first, in
// red), those coming up, and the dialog in which an operator records the call. An unsatisfied
// reporter reopens the order; one not reached stays on the list (attempts counted).

import { h, fill, rebuild } from "../dom.js";
import { t, pick, fmtPlace, fmtDateTime } from "../i18n.js";
import { can } from "../actions.js";
import * as followups from "../followups.js";
import { perform, allowed } from "../dispatch.js";
import { priorityBadge, table, dash } from "../ui.js";

export function mount(view, ctx) {
  const canAct = can(ctx.user.role, "operator");
  const status = h("span", { class: "muted small", id: "followups-stamp", role: "status" });
  const refresh = h("button", { type: "button", class: "btn", id: "followups-refresh",
    onclick: () => followups.read() }, t("btn.refresh"));
  const dueBox = h("div", { id: "followups-due" });
  const upcomingBox = h("div", { id: "followups-upcoming" });
  fill(view, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, t("fu.title")), status, refresh),
    h("p", { class: "muted" }, t("fu.explain")), dueBox, upcomingBox));

  const headers = (withAction) => [t("field.priority"), t("orders.order"), t("fu.reporter"),
    t("fu.resolved"), t("fu.due_at"), t("fu.overdue_at"), t("fu.attempts"),
    withAction ? "" : null].filter((x) => x !== null);

  function itemRow(item, withAction) {
    const o = item.order;
    const rep = o.report || {};
    return h("tr", { "data-order-id": o.id, class: ["prio-row", `prio-${o.priority}`,
      item.overdue && "fu-overdue"], "data-overdue": item.overdue ? "true" : "false" },
    h("td", {}, priorityBadge(o.priority)),
    h("td", {}, h("a", { href: `#/orders/${encodeURIComponent(o.id)}`, class: "order-link",
      "data-focus-key": `order-${o.id}` }, pick(o.title)),
    h("div", { class: "muted small" }, fmtPlace(o) || ""),
    o.status_note ? h("div", { class: "small" }, o.status_note) : null),
    h("td", {}, rep.reporter || (o.source === "report" ? dash() : t("fu.alarm_order")),
      rep.contact ? h("div", { class: "fu-contact" }, rep.contact) : null),
    h("td", { class: "nowrap" }, fmtDateTime(o.resolved_at),
      o.status_by ? h("div", { class: "muted small" }, o.status_by) : null),
    h("td", { class: "nowrap" }, fmtDateTime(item.due_at)),
    h("td", { class: "nowrap" }, item.overdue
      ? h("span", { class: "breach fu-late" }, t("fu.overdue")) : null, " ",
    fmtDateTime(item.overdue_at)),
    h("td", {}, String(item.attempts ?? (o.follow_ups || []).length)),
    withAction ? h("td", {}, h("button", { type: "button", class: "btn btn-primary",
      "data-action": "follow-up", "data-focus-key": `fu-${o.id}`,
      disabled: !allowed(o, "follow-up"),
      onclick: () => perform(o, "follow-up", { done: () => followups.read() }) },
    t("fu.record"))) : null);
  }

  function render() {
    const s = followups.state;
    status.textContent = s.now ? t("fu.as_of", { time: fmtDateTime(s.now) }) : "";
    if (!s.loaded) {
      fill(dueBox, s.error === null ? h("p", { class: "muted" }, t("board.loading"))
        : h("p", { class: "login-error" }, s.error || t("err.unreachable")));
      fill(upcomingBox);
      return;
    }
    const overdue = s.due.filter((i) => i.overdue).length;
    rebuild(dueBox,
      h("h2", { class: "section-head" }, t("fu.due", { n: s.due.length }), overdue
        ? h("span", { class: "breach fu-count", id: "fu-overdue-count" },
          t("fu.overdue_n", { n: overdue })) : null),
      s.due.length ? table(headers(canAct), s.due.map((i) => itemRow(i, canAct)),
        { className: "orders followups-due" })
        : h("p", { class: "empty-small", id: "followups-none" }, t("fu.none_due")));
    rebuild(upcomingBox,
      h("h2", { class: "section-head" }, t("fu.upcoming", { n: s.upcoming.length })),
      s.upcoming.length ? table(headers(canAct), s.upcoming.map((i) => itemRow(i, canAct)),
        { className: "orders followups-upcoming" })
        : h("p", { class: "empty-small" }, t("fu.none_upcoming")));
  }

  render();
  followups.read();
  const stop = followups.subscribe(render);
  return () => stop();
}

/** The navigation's count: follow-ups due, red when some are overdue. */
export function badge(state) {
  const n = state.due.length;
  if (!state.loaded || n === 0) return null;
  const overdue = state.overdue || state.due.filter((i) => i.overdue).length;
  return h("span", { class: ["nav-badge", overdue && "nav-badge-overdue"], id: "followups-badge",
    "data-count": n, "data-overdue": overdue,
    title: overdue ? t("fu.badge_overdue", { n, o: overdue }) : t("fu.badge", { n }) }, String(n));
}
