// Dispatch and progress of a work order at the edge (operators): assign it to a role or a
// person, record acknowledged / on site / resolved as the platform would, and record the
// follow-up call (回访). Which action fits which state, the dialogs that ask for it, and the
// gateway's refusal (409) shown in words.

import { api, errorText } from "./api.js";
import { h } from "./dom.js";
import { t, tOr, pick, currentLang } from "./i18n.js";
import { openDialog, field } from "./dialogs.js";
import { toast } from "./ui.js";

/** The actions on the work-order page, in the order a job goes. */
export const DISPATCH = ["assign", "acknowledge", "on-site", "resolve"];

/** The roles of the built-in escalation ladder; a site's own ladder adds its roles (seen on
 * the order's escalation steps). */
const LADDER_ROLES = ["control_room", "patrol", "engineering", "supervisor"];

const PROGRESS = { open: 0, alarm_cleared: 0, acknowledged: 1, on_site: 2, resolved: 3,
  rejected: 3 };
const REACHES = { acknowledge: 1, "on-site": 2, resolve: 3 };

/** Whether `action` makes sense for the order as it is (the gateway checks again). */
export function allowed(order, action) {
  const closed = order.status === "resolved" || order.status === "rejected";
  if (action === "assign") return !closed;
  if (action === "follow-up") return order.status === "resolved" && !!order.follow_up_by;
  const now = PROGRESS[order.status];
  return now !== undefined && now < REACHES[action];
}

/** Role id -> its name ({zh, en}) from the order's escalation steps, every version. */
export function roleNames(order, versions) {
  const names = {};
  for (const v of [...(versions || []), order]) {
    if (v && v.escalation && v.escalation.role) names[v.escalation.role] = v.escalation.name;
  }
  return names;
}

/** A role id in words: the ladder's own name when the order carries it, else ours. */
export function roleText(role, names = {}) {
  if (!role) return "";
  return names[role] ? pick(names[role]) : tOr(`ladder.${role}`, role);
}

/** "巡逻岗 · 张师傅". */
export function assignmentText(a, names = {}) {
  if (!a) return "";
  return [roleText(a.role, names), a.person].filter(Boolean).join(" · ");
}

// The desk's refusals (its English words, which name the order's state) in Chinese; others
// are shown as sent.
const REFUSALS = [
  [/^it is (\w+); recording (\w+) needs it (.+)$/, "refuse.wo_status"],
  [/^it is (\w+); assigning needs/, "refuse.wo_assign"],
  [/^it is (\w+)( with no follow-up)?; a follow-up needs/, "refuse.wo_follow_up"],
];

function stateWords(text) {
  return text.split(" or ").map((s) => tOr(`wo.status.${s}`, s)).join(t("refuse.or"));
}

function refusalText(reason) {
  if (currentLang() === "en") return reason;
  for (const [pattern, key] of REFUSALS) {
    const m = pattern.exec(reason);
    if (m) {
      return t(key, { state: stateWords(m[1]), target: stateWords(m[2] || ""),
        needed: stateWords(m[3] || "") });
    }
  }
  return reason;
}

/** Sends one action; resolves to {order} when done, or {error} in words. */
export async function send(order, action, body) {
  const label = t(`dispatch.${action}`);
  let answer;
  try {
    answer = await api("POST", `/api/v1/work-orders/${encodeURIComponent(order.id)}/${action}`,
      body);
  } catch {
    return { error: t("err.unreachable") };
  }
  if (answer.ok) return { order: answer.data };
  if (answer.status === 409) return { error: t("err.refused", { action: label,
    reason: refusalText(errorText(answer)) }) };
  if (answer.status === 403) return { error: t("err.forbidden", { action: label }) };
  if (answer.status === 404) return { error: t("err.no_order") };
  if (answer.status === 401) return { error: t("err.logged_out") };
  return { error: t("err.failed", { action: label, reason: errorText(answer) }) };
}

function orderName(order) {
  return `${order.priority} · ${pick(order.title)}`;
}

function trimmed(text) {
  const v = (text || "").trim();
  return v === "" ? null : v;
}

/**
 * Asks for and sends one action on `order`; `done(newOrder)` is called after it worked.
 * @param {object} o.versions  the order's versions, for the ladder's role names
 */
export function perform(order, action, { versions = null, done = () => {} } = {}) {
  const title = `${t(`dispatch.${action}`)}: ${orderName(order)}`;
  const finish = async (body, message) => {
    const result = await send(order, action, body);
    if (result.error) return result.error;
    toast(typeof message === "function" ? message(result.order) : message);
    done(result.order);
    return undefined;
  };
  if (action === "assign") {
    const names = roleNames(order, versions);
    const roles = [...new Set([...LADDER_ROLES, ...Object.keys(names),
      ...(order.assigned_to?.role ? [order.assigned_to.role] : [])])];
    openDialog({
      title,
      body: [
        h("p", { class: "hint" }, t("dispatch.assign_hint")),
        field({ name: "role", label: t("dispatch.role"), type: "select",
          value: order.assigned_to?.role || "",
          options: [["", t("dispatch.no_role")], ...roles.map((r) => [r, roleText(r, names)])] }),
        field({ name: "person", label: t("dispatch.person"), maxlength: 200,
          value: order.assigned_to?.person || "", autocomplete: "off" }),
        field({ name: "note", label: t("dispatch.note"), type: "textarea", maxlength: 2000 }),
      ],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("dispatch.assign"), kind: "primary", id: "confirm", submit: true,
          action: (v) => {
            const body = { role: trimmed(v.role), person: trimmed(v.person),
              note: trimmed(v.note) };
            if (!body.role && !body.person) return t("dispatch.need_one");
            return finish(body, t("dispatch.done.assign", {
              who: assignmentText(body, names) }));
          } },
      ],
    });
    return;
  }
  if (action === "follow-up") {
    followUpDialog(order, title, finish);
    return;
  }
  openDialog({
    title,
    body: [
      h("p", {}, t(`dispatch.explain.${action}`)),
      field({ name: "note", label: t("dispatch.note"), type: "textarea", maxlength: 2000 }),
    ],
    buttons: [
      { label: t("btn.cancel"), id: "cancel" },
      { label: t(`dispatch.${action}`), kind: "primary", id: "confirm", submit: true,
        action: (v) => finish({ note: trimmed(v.note) }, t(`dispatch.done.${action}`)) },
    ],
  });
}

/** The follow-up call: reached or not, satisfied or not (when reached), a comment. */
function followUpDialog(order, title, finish) {
  const yesNo = [["yes", t("fu.yes")], ["no", t("fu.no")]];
  const reporter = order.report
    ? [order.report.reporter, order.report.contact].filter(Boolean).join(" · ") : "";
  const satisfied = field({ name: "satisfied", label: t("fu.satisfied"), type: "radio",
    options: yesNo });
  const handle = openDialog({
    title,
    body: [
      reporter ? h("p", { class: "fu-reporter" }, t("fu.call", { who: reporter })) : null,
      field({ name: "reached", label: t("fu.reached"), type: "radio", options: yesNo,
        required: true }),
      satisfied,
      h("p", { class: "hint", id: "fu-hint" }, t("fu.hint")),
      field({ name: "comment", label: t("fu.comment"), type: "textarea", maxlength: 2000 }),
    ],
    buttons: [
      { label: t("btn.cancel"), id: "cancel" },
      { label: t("fu.record"), kind: "primary", id: "confirm", submit: true,
        action: (v) => {
          if (!v.reached) return t("fu.reached_required");
          const reached = v.reached === "yes";
          if (reached && !v.satisfied) return t("fu.satisfied_required");
          const body = { reached, satisfied: reached ? v.satisfied === "yes" : null,
            comment: trimmed(v.comment) };
          return finish(body, (after) => {
            if (!reached) return t("fu.done_not_reached", {
              n: (after.follow_ups || []).length });
            return body.satisfied ? t("fu.done_satisfied") : t("fu.done_unsatisfied");
          });
        } },
    ],
  });
  // Satisfied or not is a question only for someone reached.
  const form = handle.element.querySelector("form");
  const sync = () => {
    const reached = form.querySelector("input[name=reached]:checked");
    const on = !!reached && reached.value === "yes";
    satisfied.disabled = !on;
    satisfied.hidden = !!reached && !on;
    if (!on) for (const r of satisfied.querySelectorAll("input")) r.checked = false;
  };
  for (const r of form.querySelectorAll("input[name=reached]")) r.addEventListener("change", sync);
  sync();
}
