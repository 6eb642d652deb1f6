// The audit log: who changed what, newest first, filtered by actor or action.

import { api } from "../api.js";
import { clear, formatDate, h, icon } from "../dom.js";
import { t } from "../i18n.js";
import { badge, card, errorCard, pageHead, refreshButton, table } from "./common.js";

function detail(entry) {
  const items = Object.entries(entry.detail || {}).filter(([, v]) => v !== null && v !== "" && v !== false);
  if (!items.length) return "";
  return h("span", { class: "sub mono" }, items.map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : typeof v === "object" ? JSON.stringify(v) : v}`).join(" "));
}

export default {
  id: "audit",
  icon: "audit",
  title: "admin.audit",

  async render(panel) {
    const actor = h("input", { type: "search", id: "audit-actor", placeholder: t("audit.actor") });
    const action = h("input", { type: "search", id: "audit-action", placeholder: t("audit.action") });
    const listArea = h("div", {});

    const load = async () => {
      const query = new URLSearchParams({ limit: "200" });
      if (actor.value.trim()) query.set("actor", actor.value.trim());
      if (action.value.trim()) query.set("action", action.value.trim());
      let body;
      try {
        body = await api.get(`/api/admin/audit?${query}`);
      } catch (error) {
        clear(listArea, errorCard(error));
        return;
      }
      clear(listArea, table([
        { label: t("audit.when"), cell: (e) => formatDate(e.ts), class: "date" },
        { label: t("audit.actor"), cell: (e) => h("strong", {}, e.actor) },
        { label: t("audit.action"), cell: (e) => badge(e.action, e.status >= 400 ? "danger" : "neutral") },
        { label: t("audit.target"), cell: (e) => [e.target, detail(e)] },
        { label: t("audit.status"), cell: (e) => (e.status ? String(e.status) : ""), class: "num" },
        { label: t("audit.ip"), cell: (e) => h("span", { class: "mono" }, e.ip || "") },
      ], body.entries, { id: "audit-table", empty: t("audit.none") }));
    };

    const form = h("form", { class: "search-form", id: "audit-filter" }, actor, action,
      h("button", { type: "submit", class: "button" }, icon("search"), t("audit.filter")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    clear(panel, pageHead(t("admin.audit"), t("audit.subtitle"), refreshButton(load)), card(null, form, listArea));
    await load();
  },
};
