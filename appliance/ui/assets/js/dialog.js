// Modal dialogs built on <dialog>: focus, Escape and the backdrop come from the browser.

import { h, icon } from "./dom.js";
import { t } from "./i18n.js";

// Show a modal whose form holds `content`; resolves with the button value (or null on Escape).
export function modal({ title, content = [], actions = [], id }) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" },
      h("h2", {}, title),
      content,
      h("div", { class: "actions" }, actions.map(({ label, value, kind = "", autofocus = false }) =>
        h("button", { class: `button ${kind}`, value, autofocus, type: "submit",
          formnovalidate: value === "cancel" }, label))));
    const dialog = h("dialog", { class: "modal", id }, form);
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue || null);
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export async function confirmDialog({ title, body = "", confirm = t("common.confirm"), danger = false }) {
  const choice = await modal({
    title,
    id: "confirm-dialog",
    content: body ? [h("p", { class: "muted" }, body)] : [],
    actions: [
      { label: t("common.cancel"), value: "cancel" },
      { label: confirm, value: "ok", kind: danger ? "danger" : "primary", autofocus: true },
    ],
  });
  return choice === "ok";
}

// Ask for one value; resolves with the text, or null when cancelled.
export async function promptDialog({ title, label, value = "", type = "text", confirm = t("common.save"), hint = "" }) {
  const input = h("input", { type, value, name: "value", required: true, autocomplete: "off" });
  const content = [h("label", { class: "field" }, h("span", {}, label), input, hint && h("span", { class: "hint" }, hint))];
  const promise = modal({
    title,
    id: "prompt-dialog",
    content,
    actions: [
      { label: t("common.cancel"), value: "cancel" },
      { label: confirm, value: "ok", kind: "primary" },
    ],
  });
  input.focus();
  input.select();
  const choice = await promise;
  return choice === "ok" && input.value.trim() ? input.value : null;
}

// Show a secret once, with a copy button.
export async function secretDialog({ title, body, secret }) {
  const code = h("code", { id: "secret-value" }, secret);
  const copy = h("button", { type: "button", class: "button small", id: "copy-secret" }, icon("copy"), t("common.copy"));
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
    } catch {
      // clipboard needs HTTPS or localhost: select the text so Ctrl+C works instead
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    }
    copy.replaceChildren(icon("check"), t("common.copied"));
  });
  await modal({
    title,
    id: "secret-dialog",
    content: [h("p", { class: "muted" }, body), h("div", { class: "secret" }, code, copy)],
    actions: [{ label: t("common.done"), value: "ok", kind: "primary" }],
  });
}
