// The alarm board (start page): every alarm that needs attention, life safety first, live.

import { h, fill, replaceKeepingFocus } from "../dom.js";
import { t, tOr, pick, fmtPlace, fmtWhen, fmtDateTime, currentLang } from "../i18n.js";
import * as store from "../store.js";
import * as sound from "../sound.js";
import { api } from "../api.js";
import { can, actionsFor, perform } from "../actions.js";
import { openDialog } from "../dialogs.js";
import { priorityBadge, stateWord, elapsed, countdown, table, PRIORITIES, latchedBadge }
  from "../ui.js";

/** Work-order states in which the on-site deadline still runs. */
const RESPONDING = new Set(["open", "acknowledged", "alarm_cleared"]);

export function mount(view, ctx) {
  const summary = h("div", { class: "summary", id: "board-summary" });
  const list = h("div", { class: "alarm-list", id: "board-list", role: "list",
    "aria-label": t("board.active") });
  const empty = h("div", { class: "empty", id: "board-empty", hidden: true },
    h("span", { class: "empty-mark", "aria-hidden": "true" }, "✓"), t("board.empty"));
  const hiddenHead = h("h2", { class: "section-head", hidden: true }, t("board.hidden"));
  const hiddenList = h("div", { class: "alarm-list alarm-list-hidden", id: "board-hidden",
    role: "list", "aria-label": t("board.hidden") });
  const loading = h("p", { class: "muted", id: "board-loading" }, t("board.loading"));
  fill(view, h("section", { class: "board" }, summary, loading, list, empty, hiddenHead,
    hiddenList));

  const rows = new Map();  // alarm_id -> {sig, el}

  function render() {
    loading.hidden = store.state.loaded;
    const alarms = store.sortedAlarms();
    const shown = alarms.filter((a) => !store.isHidden(a));
    const hidden = alarms.filter((a) => store.isHidden(a));
    renderSummary(summary, shown, hidden);
    place(list, shown);
    place(hiddenList, hidden);
    empty.hidden = !store.state.loaded || shown.length > 0;
    hiddenHead.hidden = hidden.length === 0;
    for (const id of [...rows.keys()]) {
      if (!store.state.alarms.has(id)) {
        rows.get(id).el.remove();
        rows.delete(id);
      }
    }
  }

  function place(container, alarms) {
    alarms.forEach((alarm, i) => {
      const canHear = can(ctx.user.role, "operator");
      const sig = JSON.stringify([alarm, canHear && sound.sounding(alarm), currentLang()]);
      let entry = rows.get(alarm.alarm_id);
      if (!entry || entry.sig !== sig) {
        const el = alarmRow(alarm, ctx);
        if (entry) replaceKeepingFocus(entry.el, el);
        entry = { sig, el };
        rows.set(alarm.alarm_id, entry);
      }
      if (container.children[i] !== entry.el) container.insertBefore(entry.el,
        container.children[i] || null);
    });
  }

  render();
  const stopAlarms = store.subscribe((topic) => { if (topic === "alarms") render(); });
  const stopSound = sound.onChange(render);
  return () => { stopAlarms(); stopSound(); };
}

function renderSummary(el, shown, hidden) {
  const counts = Object.fromEntries(PRIORITIES.map((p) => [p, 0]));
  let unacked = 0;
  for (const alarm of shown) {
    counts[alarm.priority] += 1;
    if (!alarm.acknowledged) unacked += 1;
  }
  fill(el,
    h("span", { class: "summary-total" }, t("board.count", { n: shown.length })),
    PRIORITIES.map((p) => h("span", { class: ["chip", `prio-${p}`, counts[p] === 0 && "zero"],
      "data-count": counts[p], id: `count-${p}` }, `${p} ${tOr(`prio.${p}`, "")} ${counts[p]}`)),
    h("span", { class: ["chip", "chip-unack", unacked === 0 && "zero"], id: "count-unack" },
      t("board.unacked", { n: unacked })),
    hidden.length ? h("span", { class: "chip chip-hidden" },
      t("board.hidden_count", { n: hidden.length })) : null);
}

function alarmRow(alarm, ctx) {
  const role = ctx.user.role;
  const canAct = can(role, "operator");
  const isSounding = canAct && sound.sounding(alarm);
  const hiddenNow = store.isHidden(alarm);
  const unack = !alarm.acknowledged && !hiddenNow;
  const buttons = [];
  if (canAct) {
    if (!alarm.acknowledged) buttons.push(actionButton(alarm, "acknowledge", "btn-ack"));
    if (isSounding) {
      buttons.push(h("button", { type: "button", class: "btn btn-silence",
        "data-action": "silence", "data-focus-key": "silence",
        onclick: () => sound.silence(alarm.alarm_id) }, t("action.silence")));
    }
    if (alarm.latched && !alarm.active) buttons.push(actionButton(alarm, "reset"));
    if (alarm.shelved) buttons.push(actionButton(alarm, "unshelve"));
    if (alarm.out_of_service && can(role, "engineer")) {
      buttons.push(actionButton(alarm, "return-to-service"));
    }
  }
  buttons.push(h("button", { type: "button", class: "btn btn-more", "data-action": "details",
    "data-focus-key": "details", onclick: () => openDetails(alarm.alarm_id, ctx) },
  t(canAct ? "board.more" : "board.details")));

  return h("div", {
    role: "listitem",
    class: ["alarm", `prio-${alarm.priority}`, `st-${alarm.state}`, unack && "unack",
      isSounding && "sounding", !alarm.active && "returned"],
    "data-alarm-id": alarm.alarm_id, "data-state": alarm.state,
    "data-priority": alarm.priority, "data-sounding": isSounding ? "true" : "false",
  },
  h("div", { class: "c-prio" }, priorityBadge(alarm.priority, { flash: unack })),
  h("div", { class: "c-what" },
    h("div", { class: "a-title" }, pick(alarm.category_title)),
    h("div", { class: "a-msg" }, pick(alarm.message)),
    tags(alarm)),
  h("div", { class: "c-where" },
    h("div", { class: "a-loc" }, fmtPlace(alarm) || "—"),
    h("div", { class: "a-dev" }, alarm.device_name,
      alarm.device_name !== alarm.device ? h("span", { class: "muted" }, ` · ${alarm.device}`)
        : null)),
  h("div", { class: "c-state" },
    h("div", { class: "a-state" }, stateWord(alarm.state)),
    h("div", { class: "a-since" },
      h("span", { class: "a-time" }, fmtWhen(alarm.activated_at)), " · ",
      elapsed(alarm.activated_at))),
  h("div", { class: "c-order" }, orderCell(alarm.work_order)),
  h("div", { class: "c-actions" }, buttons));
}

function actionButton(alarm, action, extra) {
  return h("button", { type: "button", class: ["btn", extra || "btn-action"],
    "data-action": action, "data-focus-key": action,
    onclick: () => perform(alarm, action) }, t(`action.${action}`));
}

function tags(alarm) {
  const out = [];
  if (alarm.occurrences > 1) out.push(h("span", { class: "tag" },
    t("tag.occurrences", { n: alarm.occurrences })));
  if (alarm.chattering) out.push(h("span", { class: "tag tag-warn" }, t("tag.chattering")));
  if (alarm.flood_group) out.push(h("span", { class: "tag" }, t("tag.flood_group")));
  if (alarm.shelved) {
    out.push(h("span", { class: "tag" }, t("tag.shelved", { who: alarm.shelved.actor,
      until: alarm.shelved.until ? fmtWhen(alarm.shelved.until) : "—" })));
  }
  if (alarm.out_of_service) {
    out.push(h("span", { class: "tag tag-warn" }, t("tag.oos", {
      who: alarm.out_of_service.actor, reason: alarm.out_of_service.reason })));
  }
  if (alarm.suppressed_by) out.push(h("span", { class: "tag" },
    t("tag.suppressed", { by: alarm.suppressed_by })));
  return out.length ? h("div", { class: "a-tags" }, out) : null;
}

/** The work order's status, escalation and respond-by countdown, as the board shows it. */
export function orderCell(link) {
  if (!link) return h("span", { class: "muted" }, t("wo.none"));
  const parts = [
    h("div", { class: "wo-status" }, h("span", { class: "wo-label" }, `${t("field.work_order")} · `),
      h("a", { href: `#/orders/${encodeURIComponent(link.id)}`, class: "wo-link" },
        tOr(`wo.status.${link.status}`, link.status)), latchedBadge(link.latched)),
  ];
  if (link.escalation_level) {
    parts.push(h("div", { class: "wo-esc" },
      h("span", { class: "wo-level" }, t("wo.level", { n: link.escalation_level,
        of: link.escalation_levels ?? "?" })), " ", pick(link.escalation_name)));
  }
  if (RESPONDING.has(link.status)) {
    parts.push(h("div", { class: "wo-respond" }, countdown(link.respond_by, "cd.respond")));
    if (link.status === "open" && link.escalation_deadline) {
      parts.push(h("div", { class: "wo-next" }, countdown(link.escalation_deadline,
        link.escalation_level < (link.escalation_levels ?? 0) ? "cd.escalate" : "cd.resend")));
    }
  }
  return parts;
}

/** Everything about one alarm, its journal, and every action this user may take on it. */
export async function openDetails(alarmId, ctx) {
  const alarm = store.state.alarms.get(alarmId);
  if (!alarm) return;
  const role = ctx.user.role;
  const journal = h("div", { class: "journal" }, h("p", { class: "muted" }, t("board.loading")));
  const rows = [
    [t("field.priority"), priorityBadge(alarm.priority)],
    [t("field.category"), pick(alarm.category_title)],
    [t("field.message"), pick(alarm.message)],
    [t("field.location"), fmtPlace(alarm) || "—"],
    [t("field.device"), `${alarm.device_name} (${alarm.device})`],
    [t("field.state"), stateWord(alarm.state)],
    [t("field.activated_at"), fmtDateTime(alarm.activated_at)],
    [t("field.duration"), elapsed(alarm.activated_at)],
    [t("field.condition"), alarm.active ? t("cond.active") : t("cond.returned")],
    [t("field.occurrences"), String(alarm.occurrences)],
  ];
  if (alarm.shelved) rows.push([t("state.shelved"), `${alarm.shelved.actor}: ${alarm.shelved.reason}`
    + (alarm.shelved.until ? ` (→ ${fmtDateTime(alarm.shelved.until)})` : "")]);
  if (alarm.out_of_service) rows.push([t("state.out_of_service"),
    `${alarm.out_of_service.actor}: ${alarm.out_of_service.reason}`]);
  if (alarm.suppressed_by) rows.push([t("state.suppressed"), alarm.suppressed_by]);
  const evidence = Object.entries(alarm.evidence || {});
  if (evidence.length) rows.push([t("field.evidence"),
    evidence.map(([k, v]) => `${k} = ${v}`).join(", ")]);
  rows.push([t("field.work_order"), h("div", { class: "wo-inline" }, orderCell(alarm.work_order))]);
  rows.push([t("field.alarm_id"), h("code", {}, alarm.alarm_id)]);

  const buttons = actionsFor(role, alarm).map((action) => ({
    label: t(`action.${action}`), id: action,
    kind: action === "acknowledge" ? "primary" : action === "remove-from-service" ? "danger"
      : "plain",
    action: () => { setTimeout(() => perform(alarm, action), 0); },
  }));
  buttons.push({ label: t("btn.close"), id: "close" });
  openDialog({
    title: `${alarm.priority} · ${pick(alarm.category_title)} · ${alarm.device_name}`,
    wide: true,
    body: [
      h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h3", {}, t("board.journal")), journal,
    ],
    buttons,
  });
  const answer = await api("GET",
    `/api/v1/history?hours=720&limit=20&alarm_id=${encodeURIComponent(alarmId)}`).catch(() => null);
  if (!answer || !answer.ok) {
    fill(journal, h("p", { class: "muted" }, t("err.unreachable")));
    return;
  }
  fill(journal, answer.data.events.length ? table(
    [t("field.time"), t("field.transition"), t("field.actor"), t("field.reason")],
    answer.data.events.map((e) => h("tr", {},
      h("td", { class: "nowrap" }, fmtDateTime(e.ts)),
      h("td", {}, tOr(`tr.${e.transition}`, e.transition)),
      h("td", {}, e.actor === "system" ? t("history.system") : e.actor),
      h("td", {}, e.reason)))) : h("p", { class: "muted" }, "—"));
}
