// Small pieces shared by the pages: badges, live durations and countdowns, toasts.

import { h } from "./dom.js";
import { now as gatewayNow } from "./clock.js";
import { t, tOr, toMs, fmtDuration, fmtCountdown } from "./i18n.js";

export const PRIORITIES = ["P0", "P1", "P2", "P3"];

/** "P0 紧急" as a coloured badge. */
export function priorityBadge(priority, { flash = false } = {}) {
  return h("span", { class: ["prio-badge", `prio-${priority}`, flash && "flash"] },
    h("span", { class: "prio-code" }, priority),
    h("span", { class: "prio-word" }, tOr(`prio.${priority}`, "")));
}

/** A latched alarm's work order: its condition is gone, it clears only at an operator's reset. */
export function latchedBadge(latched) {
  return latched ? h("span", { class: "tag wo-latched", title: t("wo.latched.hint") },
    t("wo.latched")) : null;
}

/** An ISA-18.2 state in words. */
export function stateWord(state) {
  return tOr(`state.${state}`, state);
}

/** A span that shows the time since `since`, kept current by tick(). */
export function elapsed(since) {
  const ms = toMs(since);
  const el = h("span", { class: "elapsed", "data-since": ms ?? "" });
  el.textContent = ms === null ? "—" : fmtDuration((gatewayNow() - ms) / 1000);
  return el;
}

/** A countdown to `until`, red once past; `label` is an i18n key prefix: `${label}.left` and
 * `${label}.over` take {t}. */
export function countdown(until, label) {
  const ms = toMs(until);
  const el = h("span", { class: "countdown", "data-until": ms ?? "", "data-label": label });
  updateCountdown(el, gatewayNow());
  return el;
}

function updateCountdown(el, now) {
  const ms = Number(el.dataset.until);
  if (!el.dataset.until || Number.isNaN(ms)) {
    el.textContent = "—";
    return;
  }
  const left = (ms - now) / 1000;
  const over = left < 0;
  el.textContent = t(`${el.dataset.label}.${over ? "over" : "left"}`, { t: fmtCountdown(left) });
  el.classList.toggle("overdue", over);
  el.classList.toggle("soon", !over && left < 60);
}

/** Brings every live duration and countdown under `root` up to date (once a second). */
export function tick(root = document) {
  const now = gatewayNow();
  for (const el of root.querySelectorAll("[data-since]")) {
    const ms = Number(el.dataset.since);
    if (el.dataset.since && !Number.isNaN(ms)) el.textContent = fmtDuration((now - ms) / 1000);
  }
  for (const el of root.querySelectorAll("[data-until]")) updateCountdown(el, now);
}

function toastArea() {
  let area = document.getElementById("toasts");
  if (!area) {
    area = h("div", { id: "toasts", "aria-live": "polite" });
    document.body.append(area);
  }
  return area;
}

/** A short message at the top of the page; errors stay until closed (or 20 s). */
export function toast(message, kind = "info") {
  const close = h("button", { type: "button", class: "toast-close", "aria-label": t("btn.close") },
    "×");
  const el = h("div", { class: ["toast", `toast-${kind}`], role: kind === "error" ? "alert" : "status" },
    h("span", { class: "toast-text" }, message), close);
  close.addEventListener("click", () => el.remove());
  toastArea().append(el);
  setTimeout(() => el.remove(), kind === "error" ? 20000 : 4000);
  return el;
}

/** A table with a header row; `rows` are arrays of cells (nodes or text). */
export function table(headers, rows, { className = "" } = {}) {
  return h("table", { class: ["grid", className] },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows));
}

/** A placeholder for a missing value. */
export function dash() { return h("span", { class: "muted" }, "—"); }
