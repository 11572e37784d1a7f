// The operator's actions on an alarm: who may do which, the dialogs that confirm them, and the
// gateway's refusal shown in words.

import { api, errorText } from "./api.js";
import { h } from "./dom.js";
import { t, pick, currentLang } from "./i18n.js";
import { openDialog, field } from "./dialogs.js";
import { putAlarm } from "./store.js";
import { toast } from "./ui.js";

const ROLES = ["viewer", "operator", "engineer", "admin"];

/** Whether `role` is at least `needed`. */
export function can(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** Actions and the least role for each (the gateway checks again). */
export const NEEDS = {
  acknowledge: "operator", shelve: "operator", unshelve: "operator", reset: "operator",
  comment: "operator", "remove-from-service": "engineer", "return-to-service": "engineer",
};

/** The actions that make sense for this alarm now and that this role may take. */
export function actionsFor(role, alarm) {
  const possible = [];
  if (!alarm.acknowledged) possible.push("acknowledge");
  if (alarm.latched && !alarm.active) possible.push("reset");
  if (alarm.shelved) possible.push("unshelve");
  else if (alarm.priority !== "P0" && !alarm.out_of_service) possible.push("shelve");
  if (alarm.out_of_service) possible.push("return-to-service");
  else possible.push("remove-from-service");
  possible.push("comment");
  return possible.filter((action) => can(role, NEEDS[action]));
}

// The lifecycle's refusals (its English words) in Chinese.
const REFUSALS = [
  [/^already acknowledged$/, "refuse.already_acked"],
  [/^nothing to acknowledge/, "refuse.normal"],
  [/^the alarm is not latched \(its condition is still active\)$/, "refuse.still_active"],
  [/^the alarm is not latched$/, "refuse.not_latched"],
  [/^acknowledge the alarm before resetting it$/, "refuse.ack_first"],
  [/^a reason is required$/, "refuse.reason_required"],
  [/^life-safety \(P0\) alarms cannot be shelved$/, "refuse.p0_shelve"],
  [/^the alarm is out of service; return it to service first$/, "refuse.oos_first"],
  [/^already shelved by (.+)$/, "refuse.already_shelved"],
  [/^duration must be between/, "refuse.duration"],
  [/^one-shot shelving is for an active alarm/, "refuse.one_shot"],
  [/^the alarm is not shelved$/, "refuse.not_shelved"],
  [/^already out of service \((.+)\)$/, "refuse.already_oos"],
  [/^the alarm is in service$/, "refuse.in_service"],
  [/^the comment is empty$/, "refuse.empty_comment"],
];

/** The gateway's refusal in the current language (its own words in English). */
export function refusalText(reason) {
  if (currentLang() === "en") return reason;
  for (const [pattern, key] of REFUSALS) {
    const m = pattern.exec(reason);
    if (m) return t(key, { who: m[1] || "", raw: reason });
  }
  return reason;
}

/** Sends one action; resolves to null when done, else the reason it was refused (words). */
export async function send(alarm, action, body = {}) {
  let answer;
  try {
    answer = await api("POST", `/api/v1/alarms/${encodeURIComponent(alarm.alarm_id)}/${action}`,
      body);
  } catch {
    return t("err.unreachable");
  }
  if (answer.ok) {
    putAlarm(answer.data);
    return null;
  }
  const label = t(`action.${action}`);
  if (answer.status === 409) return t("err.refused", { action: label,
    reason: refusalText(errorText(answer)) });
  if (answer.status === 403) return t("err.forbidden", { action: label });
  if (answer.status === 404) return t("err.no_alarm");
  if (answer.status === 401) return t("err.logged_out");
  return t("err.failed", { action: label, reason: errorText(answer) });
}

function alarmName(alarm) {
  return `${pick(alarm.category_title)} · ${alarm.device_name}`;
}

const SHELVE_CHOICES = [[900, "15min"], [3600, "1h"], [4 * 3600, "4h"], [8 * 3600, "8h"],
  [24 * 3600, "24h"]];

/** Runs an action the way it should be asked: at once (acknowledge, unshelve), or after a
 * dialog that confirms it and asks for its reason. Refusals are shown. */
export async function perform(alarm, action) {
  const title = `${t(`action.${action}`)}: ${alarmName(alarm)}`;
  const done = async (body) => {
    const refused = await send(alarm, action, body);
    if (!refused) toast(t(`done.${action}`));
    return refused ?? undefined;
  };
  if (action === "acknowledge" || action === "unshelve") {
    const refused = await send(alarm, action, {});
    if (refused) toast(refused, "error");
    else toast(t(`done.${action}`));
    return;
  }
  if (action === "shelve") {
    openDialog({
      title,
      body: [
        h("p", { class: "hint" }, t("shelve.explain")),
        field({ name: "duration", label: t("shelve.duration"), type: "select", value: "3600",
          options: SHELVE_CHOICES.map(([s, key]) => [String(s), t(`shelve.${key}`)]) }),
        field({ name: "reason", label: t("field.reason"), type: "textarea", required: true,
          maxlength: 2000 }),
        field({ name: "one_shot", label: t("shelve.one_shot"), type: "checkbox",
          hint: t("shelve.one_shot_hint") }),
      ],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("action.shelve"), kind: "primary", id: "confirm", submit: true,
          action: (v) => done({ reason: v.reason.trim(), duration_s: Number(v.duration),
            one_shot: v.one_shot }) },
      ],
    });
    return;
  }
  if (action === "remove-from-service") {
    openDialog({
      title,
      body: [
        h("p", { class: "warning" }, t("oos.explain")),
        field({ name: "reason", label: t("field.reason"), type: "textarea", required: true,
          maxlength: 2000 }),
      ],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("action.remove-from-service"), kind: "danger", id: "confirm", submit: true,
          action: (v) => done({ reason: v.reason.trim() }) },
      ],
    });
    return;
  }
  if (action === "reset" || action === "return-to-service") {
    openDialog({
      title,
      body: [
        h("p", {}, t(`${action}.explain`)),
        field({ name: "reason", label: t("field.reason_optional"), type: "textarea",
          maxlength: 2000 }),
      ],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t(`action.${action}`), kind: "primary", id: "confirm", submit: true,
          action: (v) => done({ reason: v.reason.trim() }) },
      ],
    });
    return;
  }
  if (action === "comment") {
    openDialog({
      title,
      body: [field({ name: "text", label: t("field.comment"), type: "textarea", required: true,
        maxlength: 2000 })],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("action.comment"), kind: "primary", id: "confirm", submit: true,
          action: (v) => done({ text: v.text.trim() }) },
      ],
    });
  }
}
