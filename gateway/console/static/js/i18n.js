// Two languages, zh-CN (default) and English, chosen per browser and remembered; dates and
// times in the site's time zone; durations in words of the chosen language.

import { ZH, EN } from "./strings.js";
import { now } from "./clock.js";

const STORE_KEY = "propgw.lang";
const DICTS = { zh: ZH, en: EN };
const listeners = new Set();

let lang = readStoredLang();
let timeZone = "Asia/Shanghai";

function readStoredLang() {
  try {
    const stored = localStorage.getItem(STORE_KEY);
    return stored === "en" ? "en" : "zh";
  } catch {
    return "zh";
  }
}

export function currentLang() { return lang; }

export function setLang(value) {
  lang = value === "en" ? "en" : "zh";
  try { localStorage.setItem(STORE_KEY, lang); } catch { /* private mode: not remembered */ }
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const callback of listeners) callback(lang);
}

export function onLangChange(callback) { listeners.add(callback); }

export function setTimeZone(zone) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    timeZone = zone;
  } catch {
    console.warn(`unknown time zone ${zone}; showing the browser's own`);
    timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  }
  formats.clear();
}

export function currentTimeZone() { return timeZone; }

/** The label `key` in the current language, with {name} placeholders filled from `vars`. */
export function t(key, vars) {
  let text = DICTS[lang][key];
  if (text === undefined) {
    console.error(`i18n: no ${lang} text for "${key}"`);
    text = key;
  }
  if (vars) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? vars[name] : m));
  return text;
}

/** The label `key` if it exists, else `fallback` (for values the gateway may add later). */
export function tOr(key, fallback) {
  const text = DICTS[lang][key];
  return text === undefined ? fallback : text;
}

/** The current language's half of a bilingual text from the API ({zh, en}). */
export function pick(text) {
  if (text === null || text === undefined) return "";
  if (typeof text === "string") return text;
  return text[lang] || text.zh || text.en || "";
}

/** Milliseconds since the epoch from an API time (ISO 8601 text, or epoch seconds), or a Date. */
export function toMs(value) {
  if (value === null || value === undefined || value === "") return null;
  if (value instanceof Date) return value.getTime();
  if (typeof value === "number") return value * 1000;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

const formats = new Map();

function parts(ms, withDate, withSeconds) {
  const key = `${withDate}${withSeconds}`;
  let format = formats.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {
      timeZone, hourCycle: "h23",
      ...(withDate ? { year: "numeric", month: "2-digit", day: "2-digit" } : {}),
      hour: "2-digit", minute: "2-digit", ...(withSeconds ? { second: "2-digit" } : {}),
    });
    formats.set(key, format);
  }
  const out = {};
  for (const part of format.formatToParts(new Date(ms))) out[part.type] = part.value;
  return out;
}

/** "2026-12-05 23:19:32" in the site's time zone (the same in both languages: unambiguous). */
export function fmtDateTime(value, { seconds = true } = {}) {
  const ms = toMs(value);
  if (ms === null) return "—";
  const p = parts(ms, true, seconds);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? `:${p.second}` : ""}`;
}

/** "23:19:32", or with the date when it is not today (site time). */
export function fmtWhen(value) {
  const ms = toMs(value);
  if (ms === null) return "—";
  const p = parts(ms, true, true);
  const today = parts(now(), true, true);
  const time = `${p.hour}:${p.minute}:${p.second}`;
  if (p.year === today.year && p.month === today.month && p.day === today.day) return time;
  return `${p.month}-${p.day} ${time}`;
}

/** "12-05 14:00" for chart axes. */
export function fmtHour(ms) {
  const p = parts(ms, true, false);
  return `${p.month}-${p.day} ${p.hour}:${p.minute}`;
}

/** The UTC offset of the site's zone now, e.g. "UTC+8". */
export function fmtZone() {
  try {
    const name = new Intl.DateTimeFormat("en", { timeZone, timeZoneName: "shortOffset" })
      .formatToParts(new Date(now())).find((p) => p.type === "timeZoneName");
    return name ? name.value.replace("GMT", "UTC") : timeZone;
  } catch {
    return timeZone;
  }
}

/** A duration in words: "3分12秒" / "3 min 12 s"; two units at most. */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const units = [[d, "unit.d"], [h, "unit.h"], [m, "unit.min"], [s, "unit.s"]];
  const first = units.findIndex(([n]) => n > 0);
  if (first === -1) return t("unit.s", { n: 0 });
  const shown = units.slice(first, first + 2).filter(([n]) => n > 0);
  return shown.map(([n, key]) => t(key, { n })).join(t("unit.sep"));
}

/** A countdown: "04:32", "1:04:32", or in words beyond a day. */
export function fmtCountdown(seconds) {
  const s = Math.abs(Math.floor(seconds));
  if (s >= 86400) return fmtDuration(s);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** A plain number in the current language (thousands separators, a few decimals). */
export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-GB", {
    maximumFractionDigits: digits, minimumFractionDigits: 0,
  }).format(n);
}

/** Where something is, as the gateway wrote it in both languages (`location_text`); from the
 * bare parts when an answer has none. */
export function fmtPlace(item) {
  if (!item) return "";
  if (item.location_text) return pick(item.location_text);
  const loc = item.location || {};
  return ["building", "floor", "zone", "room"].map((k) => loc[k]).filter(Boolean)
    .join(lang === "zh" ? " " : ", ");
}

let categories = {};

/** The site's category titles ({id: {zh, en}}, from GET /api/v1/site). */
export function setCategories(map) { categories = map || {}; }

export function categoryIds() { return Object.keys(categories).sort(); }

/** A category's title in the current language (its id when the gateway gave none). */
export function categoryTitle(id) {
  const title = categories[id];
  if (title) return pick(title);
  return tOr(`cat.${id}`, id);
}
