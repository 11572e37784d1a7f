// The console page: login, the header (site, pages, live state, sound, language, clock, user),
// banners (alarm flood, gateway health, lost connection), and the pages themselves.

import { h, svg, fill } from "./dom.js";
import { t, tOr, setLang, currentLang, onLangChange, setTimeZone, setCategories, fmtDateTime,
  fmtZone, fmtDuration,
  fmtWhen } from "./i18n.js";
import { api, setCsrf, whenUnauthorized } from "./api.js";
import * as store from "./store.js";
import * as sound from "./sound.js";
import { can } from "./actions.js";
import { closeDialog } from "./dialogs.js";
import { tick } from "./ui.js";
import { now as gatewayNow, skewMs } from "./clock.js";

/** This PC's clock this far off the gateway's gets a note on the header clock. */
const SKEW_NOTE_MS = 60_000;
import * as login from "./pages/login.js";
import * as board from "./pages/board.js";
import * as orders from "./pages/orders.js";
import * as reports from "./pages/reports.js";
import * as followupsPage from "./pages/followups.js";
import * as followups from "./followups.js";
import * as devices from "./pages/devices.js";
import * as history from "./pages/history.js";
import * as kpi from "./pages/kpi.js";
import * as users from "./pages/users.js";

const PAGES = [
  { id: "board", page: board, role: "viewer" },
  { id: "orders", page: orders, role: "viewer" },
  { id: "reports", page: reports, role: "operator" },  // the reports routes are operators'
  { id: "followups", page: followupsPage, role: "viewer" },
  { id: "devices", page: devices, role: "viewer" },
  { id: "history", page: history, role: "viewer" },
  { id: "kpi", page: kpi, role: "viewer" },
  { id: "users", page: users, role: "admin" },
];
const HEALTH_EVERY = 10000;

const app = { site: null, user: null, unmount: null, healthTimer: null, health: null,
  offlineSince: 0 };
const root = document.getElementById("app");

async function boot() {
  setLang(currentLang());
  whenUnauthorized(() => { if (app.user) endSession(true); });
  let site = null;
  while (!site) {
    try {
      const answer = await api("GET", "/api/v1/site");
      if (answer.ok) site = answer.data;
    } catch { /* the gateway is starting or away */ }
    if (!site) {
      fill(root, h("main", { class: "login-page" }, h("p", { class: "login-error" },
        t("err.unreachable"))));
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }
  app.site = site;
  setTimeZone(site.timezone);
  setCategories(site.categories);
  updateTitle();
  onLangChange(() => {
    updateTitle();
    if (app.user) renderShell(); else showLogin(false);
  });
  setInterval(everySecond, 1000);
  if (site.logged_in) {  // the site says so: no refused request on a plain login page
    try {
      const answer = await api("GET", "/api/v1/session");
      if (answer.ok) {
        startSession(answer.data);
        return;
      }
    } catch { /* show the login */ }
  }
  showLogin(false);
}

function langButton() {
  const other = currentLang() === "zh" ? "en" : "zh";
  return h("button", { type: "button", class: "btn btn-lang", id: "lang-switch", lang: other,
    "aria-label": t("lang.switch"), onclick: () => setLang(other) },
  other === "en" ? "English" : "中文");
}

function showLogin(expired) {
  if (app.unmount) app.unmount();
  app.unmount = null;
  login.mount(root, { site: app.site, onLogin: startSession, langButton: langButton(),
    expired });
}

function startSession(session) {
  app.user = { name: session.name, role: session.role };
  setCsrf(session.csrf_token);
  document.documentElement.dataset.role = session.role;
  sound.allow(can(session.role, "operator"));
  if (!location.hash || location.hash === "#") location.hash = "#/board";
  store.start();
  followups.start();
  renderShell();
  pollHealth();
}

function endSession(expired) {
  app.user = null;
  setCsrf("");
  store.stop();
  followups.stop();
  sound.allow(false);
  clearTimeout(app.healthTimer);
  app.health = null;
  closeDialog();
  showLogin(expired);
}

async function logout() {
  try { await api("DELETE", "/api/v1/session"); } catch { /* logged out here anyway */ }
  endSession(false);
}

// -- the shell

let shell = null;

function renderShell() {
  if (app.unmount) app.unmount();
  app.unmount = null;
  const nav = h("nav", { class: "nav", "aria-label": t("nav.label") },
    PAGES.filter((p) => can(app.user.role, p.role)).map((p) => h("a", {
      href: `#/${p.id}`, id: `nav-${p.id}`, "data-page": p.id }, t(`nav.${p.id}`))));
  const live = h("span", { class: "live", id: "live", role: "status" });
  const soundButton = can(app.user.role, "operator")
    ? h("button", { type: "button", class: "btn btn-sound", id: "sound-enable",
      onclick: () => sound.enable() }) : null;
  const clock = h("span", { class: "clock", id: "clock" });
  const who = h("span", { class: "who", id: "who" }, app.user.name,
    h("span", { class: "role" }, tOr(`role.${app.user.role}`, app.user.role)));
  const banners = h("div", { class: "banners", id: "banners" });
  const view = h("main", { class: "view", id: "view", tabindex: "-1" });
  fill(root,
    h("a", { class: "skip", href: "#view" }, t("nav.skip")),
    h("header", { class: "topbar" },
      h("div", { class: "brand" }, h("span", { class: "brand-site" }, app.site.name),
        h("span", { class: "brand-sub" }, t("app.title"))),
      nav,
      h("div", { class: "tools" }, live, soundButton, langButton(), clock, who,
        h("button", { type: "button", class: "btn btn-logout", id: "logout", onclick: logout },
          t("btn.logout")))),
    banners, view);
  shell = { nav, live, soundButton, clock, banners, view };
  updateLive();
  updateFollowUpBadge();
  updateSoundButton();
  updateBanners();
  updateClock();
  route();
}

function updateLive() {
  if (!shell) return;
  const c = store.state.connection;
  shell.live.className = `live live-${c}`;
  shell.live.textContent = t(`live.${c}`);
}

/** The follow-ups due, counted next to their page's name (red when some are overdue). */
function updateFollowUpBadge() {
  if (!shell) return;
  const link = shell.nav.querySelector("#nav-followups");
  if (!link) return;
  const old = link.querySelector(".nav-badge");
  const now = followupsPage.badge(followups.state);
  if (old && now) old.replaceWith(now);
  else if (old) old.remove();
  else if (now) link.append(now);
}

function updateSoundButton() {
  if (!shell || !shell.soundButton) return;
  const on = sound.enabled();
  const level = sound.currentLevel();
  fill(shell.soundButton, speakerIcon(on), on ? t("sound.on") : t("sound.enable"));
  shell.soundButton.classList.toggle("sound-off", !on);
  shell.soundButton.classList.toggle("sound-needed", !on && !!level);
  shell.soundButton.disabled = on;
  shell.soundButton.title = t("sound.explain");
}

/** A loudspeaker, with sound waves when on and a cross when off (no emoji font needed). */
function speakerIcon(on) {
  return svg("svg", { class: "icon", viewBox: "0 0 24 24", "aria-hidden": "true" },
    svg("path", { d: "M3 9v6h4l5 4V5L7 9H3z" }),
    on ? svg("path", { class: "stroke", d: "M15.5 8.5a5 5 0 0 1 0 7M18 6a8.5 8.5 0 0 1 0 12" })
      : svg("path", { class: "stroke", d: "M16 9l6 6M22 9l-6 6" }));
}

function updateClock() {
  if (!shell) return;
  shell.clock.textContent = `${fmtDateTime(new Date(gatewayNow()))} ${fmtZone()}`;
  // Times on the page follow the gateway; say so when this PC's own clock is well off.
  const skew = Math.abs(skewMs()) >= SKEW_NOTE_MS;
  shell.clock.classList.toggle("clock-skew", skew);
  if (skew) {
    shell.clock.title = t("clock.skew", { t: fmtDuration(Math.abs(skewMs()) / 1000) });
  } else {
    shell.clock.removeAttribute("title");
  }
}

function updateBanners() {
  if (!shell) return;
  const out = [];
  const flood = store.state.flood;
  if (flood) {
    out.push(h("div", { class: "banner banner-flood", id: "banner-flood", role: "alert" },
      h("strong", {}, t("banner.flood")), " ",
      t("banner.flood_detail", { since: fmtWhen(flood.started), n: flood.counted ?? "?",
        grouped: flood.grouped ?? "?" })));
  }
  const health = app.health;
  if (health && health.status !== "ok") {
    out.push(h("div", { class: ["banner", `banner-${health.status}`], id: "banner-health",
      role: "alert" },
    h("strong", {}, t(`banner.health_${health.status}`)), " ",
    h("ul", { class: "reasons" }, (health.reasons || []).map((r) => h("li", {},
      tOr(`health.${r.code}`, r.code), h("span", { class: "reason-detail" }, ` — ${r.message}`))))));
  }
  const c = store.state.connection;
  if (c !== "live" && app.offlineSince && Date.now() - app.offlineSince > 2000) {
    out.push(h("div", { class: "banner banner-failing", id: "banner-connection",
      role: "alert" }, t(c === "down" ? "banner.feed_down" : "banner.feed_reconnecting")));
  }
  fill(shell.banners, out);
}

async function pollHealth() {
  clearTimeout(app.healthTimer);
  if (!app.user) return;
  try {
    const answer = await api("GET", "/api/v1/health");
    if (answer.ok) app.health = answer.data;
  } catch {
    app.health = null;  // the connection banner says it
  }
  updateBanners();
  if (app.user) app.healthTimer = setTimeout(pollHealth, HEALTH_EVERY);
}

function everySecond() {
  updateClock();
  tick();
  const c = store.state.connection;
  if (c === "live") app.offlineSince = 0;
  else if (!app.offlineSince) app.offlineSince = Date.now();
  if (shell && (c !== "live") !== !!document.getElementById("banner-connection")) {
    updateBanners();
  }
}

// -- pages

function route() {
  if (!shell || !app.user) return;
  const [, pageId = "board", ...rest] = (location.hash || "#/board").split("/");
  const entry = PAGES.find((p) => p.id === pageId && can(app.user.role, p.role))
    || PAGES[0];
  for (const link of shell.nav.querySelectorAll("a")) {
    if (link.dataset.page === entry.id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (app.unmount) app.unmount();
  closeDialog();
  document.documentElement.dataset.page = entry.id;
  app.unmount = entry.page.mount(shell.view, { user: app.user, site: app.site,
    param: rest.map(decodeURIComponent).join("/") || null }) || null;
}

window.addEventListener("hashchange", route);
store.subscribe((topic) => {
  if (topic === "connection") { updateLive(); updateBanners(); }
  if (topic === "alarms") {
    updateBanners();
    updateTitle();
  }
});

/** The tab's title counts the unacknowledged alarms: visible from another tab or window. */
function updateTitle() {
  if (!app.site) return;
  const unacked = [...store.state.alarms.values()]
    .filter((a) => !a.acknowledged && !store.isHidden(a)).length;
  const base = `${app.site.name} · ${t("app.title")}`;
  document.title = app.user && unacked ? `(${unacked}) ${base}` : base;
}
followups.subscribe(updateFollowUpBadge);
sound.onChange(updateSoundButton);
// Any click or key on the page lets it sound (browsers need one); it asks only if none came.
for (const kind of ["pointerdown", "keydown"]) {
  window.addEventListener(kind, () => {
    if (app.user && can(app.user.role, "operator") && !sound.enabled()) sound.enable();
  }, { capture: true });
}

boot();
