// Pieces every console tab uses: page headings, cards, tables and async button handlers.

import { clear, h, icon, toast } from "../dom.js";
import { t } from "../i18n.js";

export function pageHead(title, subtitle, ...actions) {
  return h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, title), subtitle ? h("p", {}, subtitle) : null),
    h("span", { class: "spacer" }),
    actions);
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, children);
}

// A table; `columns` = [{label, cell(row) -> node|string, class}]; an empty list shows `empty`.
export function table(columns, rows, { empty = t("common.none"), id, rowId } = {}) {
  if (!rows.length) return h("p", { class: "muted", id }, empty);
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class || "" }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", { "data-id": rowId ? rowId(row) : null },
      columns.map((c) => h("td", { class: c.class || "", "data-label": c.label || null }, c.cell(row))))))));
}

export function badge(text, kind = "neutral") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function chips(values) {
  if (!values || !values.length) return h("span", { class: "faint" }, "–");
  return h("span", { class: "chips" }, values.map((v) => badge(v)));
}

// A button that runs `action`, disabled meanwhile; errors are shown as a toast.
export function actionButton(label, action, { kind = "", iconName, small = true, id, title } = {}) {
  const button = h("button", {
    type: "button", class: `button ${kind} ${small ? "small" : ""}`.trim(), id, title,
  }, iconName ? icon(iconName) : null, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      toast(error.message, { error: true });
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export function refreshButton(onClick) {
  return actionButton(t("common.refresh"), onClick, { iconName: "refresh", id: "refresh" });
}

export function errorCard(error) {
  return h("div", { class: "card" }, h("p", { class: "form-error" }, error.message));
}

export function replace(el, ...children) {
  return clear(el, ...children);
}

export function splitGroups(text) {
  return text.split(",").map((g) => g.trim()).filter(Boolean);
}
