// The login page; also says how to create the first admin when nobody can log in yet.

import { h, fill } from "../dom.js";
import { t } from "../i18n.js";
import { api, errorText } from "../api.js";
import * as sound from "../sound.js";
import { field } from "../dialogs.js";

// The gateway's login refusals in the current language.
function loginError(answer) {
  if (answer.status === 401) return t("login.wrong");
  if (answer.status === 429) {
    const wait = Number(answer.headers.get("Retry-After"));
    return t("login.locked", { s: Number.isFinite(wait) && wait > 0 ? wait : "?" });
  }
  return t("login.failed", { reason: errorText(answer) });
}

export function mount(root, { site, onLogin, langButton, expired }) {
  const error = h("p", { class: "login-error", id: "login-error", role: "alert",
    hidden: !expired }, expired ? t("login.expired") : "");
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-wide",
    id: "login-submit" }, t("login.submit"));
  const form = h("form", { class: "login-form", id: "login-form", novalidate: true },
    field({ name: "name", label: t("login.name"), required: true, maxlength: 64,
      autocomplete: "username" }),
    field({ name: "password", label: t("login.password"), type: "password", required: true,
      maxlength: 1024, autocomplete: "current-password" }),
    error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sound.enable();  // a click on the page: the browser now lets it sound alarms
    if (!form.reportValidity()) return;
    const name = form.elements.name.value.trim();
    const password = form.elements.password.value;
    submit.disabled = true;
    let answer;
    try {
      answer = await api("POST", "/api/v1/session", { name, password });
    } catch {
      answer = null;
    }
    submit.disabled = false;
    if (answer && answer.ok) {
      onLogin(answer.data);
      return;
    }
    error.textContent = answer ? loginError(answer) : t("err.unreachable");
    error.hidden = false;
    form.elements.password.select();
  });

  const firstAdmin = site.users_configured ? null : h("div", { class: "first-admin",
    id: "first-admin" },
  h("h2", {}, t("login.no_users")),
  h("p", {}, t("login.no_users_how")),
  h("pre", {}, h("code", {}, "propgw users add -c <site.yaml> <name> --role admin")),
  h("p", { class: "hint" }, t("login.no_default_password")));

  fill(root, h("main", { class: "login-page" },
    h("div", { class: "login-card" },
      h("div", { class: "login-top" }, langButton),
      h("h1", {}, site.name || "propgw"),
      h("p", { class: "login-sub" }, t("app.title")),
      firstAdmin, form,
      h("p", { class: "login-foot muted" }, `propgw ${site.version || ""} · ${site.gateway_id || ""}`))));
  form.elements.name.focus();
}
