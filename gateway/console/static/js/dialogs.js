// Dialogs on the native <dialog> element: modal, focus kept inside, Esc closes. One at a time.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";

let current = null;

function dialogElement() {
  let el = document.getElementById("dialog");
  if (!el) {
    el = h("dialog", { id: "dialog", "aria-labelledby": "dialog-title" });
    document.body.append(el);
  }
  return el;
}

/** Closes the open dialog, if any. */
export function closeDialog() {
  if (current) current.close();
}

/**
 * Opens a dialog.
 * @param {object} o
 * @param {string} o.title
 * @param {Node[]} o.body          content (inputs inside are part of its form)
 * @param {Array} o.buttons        [{label, kind: "primary"|"danger"|"plain", action, submit}]
 *   `action(values)` may return a Promise; a string result is shown as an error and keeps the
 *   dialog open; anything else closes it. The `submit` button also answers Enter.
 * @param {boolean} [o.wide]
 */
export function openDialog({ title, body, buttons, wide = false, onClose }) {
  closeDialog();
  const el = dialogElement();
  el.className = wide ? "wide" : "";
  const error = h("p", { class: "dialog-error", role: "alert", hidden: true });
  const footer = h("div", { class: "dialog-buttons" });
  const form = h("form", { method: "dialog", novalidate: true },
    h("h2", { id: "dialog-title", text: title }),
    h("div", { class: "dialog-body" }, body),
    error, footer);
  let busy = false;

  async function run(button) {
    if (busy) return;
    if (button.submit && !form.reportValidity()) return;
    busy = true;
    for (const b of footer.querySelectorAll("button")) b.disabled = true;
    let result;
    try {
      result = button.action ? await button.action(values(form)) : undefined;
    } catch (exc) {
      result = t("err.unreachable");
      console.warn(exc);
    }
    busy = false;
    for (const b of footer.querySelectorAll("button")) b.disabled = false;
    if (typeof result === "string") {
      error.textContent = result;
      error.hidden = false;
    } else {
      handle.close();
    }
  }

  for (const button of buttons) {
    footer.append(h("button", {
      type: "button", class: ["btn", `btn-${button.kind || "plain"}`],
      "data-dialog-button": button.id || button.kind || "plain",
      onclick: () => run(button),
    }, button.label));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const submit = buttons.find((b) => b.submit);
    if (submit) run(submit);
  });
  fill(el, form);
  const handle = {
    element: el,
    close() {
      if (current === handle) current = null;
      if (el.open) el.close();
      if (onClose) onClose();
    },
  };
  el.onclose = () => {
    // A close event queued by the dialog this one replaced arrives while this one is open.
    if (el.open || current !== handle) return;
    current = null;
    if (onClose) onClose();
  };
  current = handle;
  el.showModal();
  const first = el.querySelector("input, select, textarea")
    || footer.querySelector(".btn-primary, .btn-danger");
  if (first) first.focus();
  return handle;
}

function values(form) {
  const out = {};
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (!input.name) continue;
    if (input.type === "radio") {  // a group: the checked one's value, "" when none is
      if (!(input.name in out)) out[input.name] = "";
      if (input.checked) out[input.name] = input.value;
      continue;
    }
    out[input.name] = input.type === "checkbox" ? input.checked : input.value;
  }
  return out;
}

/** A labelled form field; `radio` is a group of choices (`options`: [[value, text], ...]). */
export function field({ name, label, type = "text", value = "", required = false, options,
  hint, maxlength, minlength, autocomplete }) {
  const id = `f-${name}`;
  let input;
  if (type === "radio") {
    return h("fieldset", { class: "field field-radio", id },
      h("legend", {}, label),
      h("div", { class: "radios" }, options.map(([v, text]) => h("label",
        { class: "radio", for: `${id}-${v}` },
        h("input", { type: "radio", id: `${id}-${v}`, name, value: v, checked: v === value,
          required }), text))),
      hint ? h("p", { class: "hint" }, hint) : null);
  }
  if (type === "textarea") {
    input = h("textarea", { id, name, required, maxlength, rows: 3 });
    input.value = value;
  } else if (type === "select") {
    input = h("select", { id, name, required },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  } else if (type === "checkbox") {
    input = h("input", { id, name, type: "checkbox", checked: !!value });
    return h("div", { class: "field field-check" }, input, h("label", { for: id }, label),
      hint ? h("p", { class: "hint" }, hint) : null);
  } else {
    input = h("input", { id, name, type, required, maxlength, minlength, autocomplete });
    input.value = value;
  }
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint" }, hint) : null);
}

/** Asks a yes/no question; resolves true when confirmed. */
export function confirmDialog({ title, message, confirm, danger = false }) {
  return new Promise((resolve) => {
    let answered = false;
    openDialog({
      title,
      body: [h("p", {}, message)],
      buttons: [
        { label: t("btn.cancel"), kind: "plain", id: "cancel", action: () => {} },
        { label: confirm, kind: danger ? "danger" : "primary", id: "confirm", submit: true,
          action: () => { answered = true; resolve(true); } },
      ],
      onClose: () => { if (!answered) resolve(false); },
    });
  });
}
