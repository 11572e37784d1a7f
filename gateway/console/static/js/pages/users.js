// Users (admins): who may log in and with which role; add, change role or password, delete.

import { h, fill } from "../dom.js";
import { t } from "../i18n.js";
import { api, errorText } from "../api.js";
import { openDialog, field, confirmDialog } from "../dialogs.js";
import { table, toast } from "../ui.js";

const ROLES = ["viewer", "operator", "engineer", "admin"];

function roleOptions() {
  return ROLES.map((r) => [r, `${t(`role.${r}`)} (${r})`]);
}

export function mount(view, ctx) {
  const box = h("div", { id: "users" }, h("p", { class: "muted" }, t("board.loading")));
  const add = h("button", { type: "button", class: "btn btn-primary", id: "user-add",
    onclick: () => addUser() }, t("users.add"));
  fill(view, h("section", { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, t("users.title")), add),
    h("p", { class: "muted" }, t("users.roles_explain")), box));
  let gone = false;

  async function load() {
    let answer = null;
    try { answer = await api("GET", "/api/v1/users"); } catch { /* below */ }
    if (gone) return;
    if (!answer || !answer.ok) {
      fill(box, h("p", { class: "login-error" }, answer ? errorText(answer) : t("err.unreachable")));
      return;
    }
    fill(box, table([t("users.name"), t("users.role"), ""], answer.data.map((u) => h("tr",
      { "data-user": u.name },
      h("td", {}, h("strong", {}, u.name), u.name === ctx.user.name
        ? h("span", { class: "muted" }, ` (${t("users.you")})`) : null),
      h("td", {}, `${t(`role.${u.role}`)} (${u.role})`),
      h("td", { class: "row-buttons" },
        h("button", { type: "button", class: "btn", "data-action": "role",
          onclick: () => changeRole(u) }, t("users.change_role")),
        h("button", { type: "button", class: "btn", "data-action": "password",
          onclick: () => changePassword(u) }, t("users.change_password")),
        h("button", { type: "button", class: "btn btn-danger", "data-action": "delete",
          onclick: () => remove(u) }, t("users.delete")))))));
  }

  async function submit(method, path, body, done) {
    let answer;
    try { answer = await api(method, path, body); } catch { return t("err.unreachable"); }
    if (!answer.ok) return errorText(answer);
    toast(done);
    load();
    return undefined;
  }

  function addUser() {
    openDialog({
      title: t("users.add"),
      body: [
        field({ name: "name", label: t("users.name"), required: true, maxlength: 64,
          autocomplete: "off", hint: t("users.name_hint") }),
        field({ name: "role", label: t("users.role"), type: "select", value: "operator",
          options: roleOptions() }),
        field({ name: "password", label: t("users.password"), type: "password", required: true,
          minlength: 8, maxlength: 1024, autocomplete: "new-password",
          hint: t("users.password_hint") }),
      ],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("users.add"), kind: "primary", id: "confirm", submit: true,
          action: (v) => submit("POST", "/api/v1/users", { name: v.name.trim(), role: v.role,
            password: v.password }, t("users.added", { name: v.name.trim() })) },
      ],
    });
  }

  function changeRole(u) {
    openDialog({
      title: `${t("users.change_role")}: ${u.name}`,
      body: [field({ name: "role", label: t("users.role"), type: "select", value: u.role,
        options: roleOptions() }), h("p", { class: "hint" }, t("users.sessions_end"))],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("btn.save"), kind: "primary", id: "confirm", submit: true,
          action: (v) => submit("PATCH", `/api/v1/users/${encodeURIComponent(u.name)}`,
            { role: v.role }, t("users.changed", { name: u.name })) },
      ],
    });
  }

  function changePassword(u) {
    openDialog({
      title: `${t("users.change_password")}: ${u.name}`,
      body: [field({ name: "password", label: t("users.password"), type: "password",
        required: true, minlength: 8, maxlength: 1024, autocomplete: "new-password",
        hint: t("users.password_hint") }), h("p", { class: "hint" }, t("users.sessions_end"))],
      buttons: [
        { label: t("btn.cancel"), id: "cancel" },
        { label: t("btn.save"), kind: "primary", id: "confirm", submit: true,
          action: (v) => submit("PATCH", `/api/v1/users/${encodeURIComponent(u.name)}`,
            { password: v.password }, t("users.changed", { name: u.name })) },
      ],
    });
  }

  async function remove(u) {
    const yes = await confirmDialog({ title: `${t("users.delete")}: ${u.name}`,
      message: t("users.delete_confirm", { name: u.name }), confirm: t("users.delete"),
      danger: true });
    if (!yes) return;
    let answer;
    try {
      answer = await api("DELETE", `/api/v1/users/${encodeURIComponent(u.name)}`);
    } catch {
      toast(t("err.unreachable"), "error");
      return;
    }
    if (answer.ok) {
      toast(t("users.deleted", { name: u.name }));
      load();
    } else {
      toast(errorText(answer), "error");
    }
  }

  load();
  return () => { gone = true; };
}
