// Devices: each device's link and state, and the last value, quality and time of every point
// (what the gateway reads), with the link's counters. Re-read every 10 s while shown.

import { h, fill, rebuild } from "../dom.js";
import { t, tOr, fmtPlace, fmtWhen, fmtNumber } from "../i18n.js";
import { api, errorText } from "../api.js";
import { table } from "../ui.js";
import { now } from "../clock.js";

const EVERY = 10000;
const GOOD = new Set(["ok", "connected"]);

export function mount(view) {
  const box = h("div", { id: "devices" }, h("p", { class: "muted" }, t("board.loading")));
  const stamp = h("span", { class: "muted small", id: "devices-stamp" });
  const refresh = h("button", { type: "button", class: "btn", id: "devices-refresh",
    onclick: () => load() }, t("btn.refresh"));
  fill(view, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, t("devices.title")), stamp, refresh), box));
  let timer = null;
  let gone = false;

  async function load() {
    clearTimeout(timer);
    let answer = null;
    try { answer = await api("GET", "/api/v1/devices"); } catch { /* below */ }
    if (gone) return;
    if (!answer || !answer.ok) {
      fill(box, h("p", { class: "login-error" }, answer ? errorText(answer) : t("err.unreachable")));
    } else {
      const opened = new Set([...box.querySelectorAll("details[open]")]
        .map((d) => d.closest("tr")?.dataset.device));
      rebuild(box, render(answer.data.devices));
      for (const row of box.querySelectorAll("tr[data-device]")) {
        const details = row.querySelector("details");
        if (details && opened.has(row.dataset.device)) details.open = true;
      }
      stamp.textContent = t("devices.as_of", { time: fmtWhen(new Date(now())) });
    }
    timer = setTimeout(load, EVERY);
  }

  load();
  return () => { gone = true; clearTimeout(timer); };
}

function stateChip(value, kind) {
  if (!value) return h("span", { class: "muted" }, "—");
  return h("span", { class: ["chip", "dev-state", GOOD.has(value) ? "good" : "bad"] },
    tOr(`${kind}.${value}`, value));
}

function pointValue(point) {
  if (point.value === null || point.value === undefined) return h("span", { class: "muted" }, "—");
  const text = typeof point.value === "number" ? String(Math.round(point.value * 1000) / 1000)
    : String(point.value);
  return h("span", { class: "value" }, text, point.unit ? ` ${point.unit}` : "");
}

function render(devices) {
  if (!devices.length) return h("p", { class: "empty-small" }, t("devices.none"));
  const down = devices.filter((d) => d.state && d.state !== "ok").length;
  return [
    h("p", { class: "summary-line" }, t("devices.summary", { n: devices.length, down })),
    table([t("field.device"), t("devices.kind"), t("field.location"), t("devices.link"),
      t("field.state"), t("devices.points")],
    devices.map((d) => h("tr", { "data-device": d.id, class: d.state && d.state !== "ok"
      ? "dev-bad" : "" },
    h("td", {}, h("strong", {}, d.name),
      h("div", { class: "muted small" }, `${d.id} · ${d.driver}`),
      h("div", { class: "muted small readings" }, d.readings
        ? t("devices.readings", { n: fmtNumber(d.readings), time: fmtWhen(d.last_reading) })
        : t("devices.no_readings"))),
    h("td", {}, d.kind ? tOr(`kind.${d.kind}`, d.kind) : "—"),
    h("td", {}, fmtPlace(d) || "—"),
    h("td", {}, h("div", {}, d.link || "—"), stateChip(d.link_state, "link")),
    h("td", {}, stateChip(d.state, "dev")),
    h("td", {}, pointsTable(d.points), counters(d.counters)))),
    { className: "devices" }),
  ];
}

function pointsTable(points) {
  if (!points.length) return h("span", { class: "muted" }, "—");
  return h("table", { class: "points" }, h("tbody", {}, points.map((p) => h("tr", {},
    h("th", { scope: "row" }, p.name),
    h("td", {}, pointValue(p)),
    h("td", { class: ["small", p.quality && p.quality !== "good" ? "bad-text" : "muted"] },
      p.quality ? tOr(`quality.${p.quality}`, p.quality) : "—"),
    h("td", { class: "small muted nowrap" }, p.ts ? fmtWhen(p.ts) : "—")))));
}

function counters(values) {
  const entries = Object.entries(values || {});
  if (!entries.length) return null;
  return h("details", { class: "counters" }, h("summary", {}, t("devices.counters")),
    h("dl", { class: "facts small" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
}
