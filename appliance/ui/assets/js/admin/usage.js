// Usage and quotas: role defaults, each user's and API key's limits (set or inherited) with what
// they used today, and CSV exports of usage and the audit log for a period.

import { api } from "../api.js";
import { modal } from "../dialog.js";
import { clear, formatNumber, h, icon, toast } from "../dom.js";
import { t } from "../i18n.js";
import { usageAgainst } from "../usage.js";
import { actionButton, badge, card, errorCard, pageHead, refreshButton, table } from "./common.js";

const LIMITS = ["requests_per_minute", "tokens_per_day"];
const LABELS = { requests_per_minute: "usage.requestsPerMinute", tokens_per_day: "usage.tokensPerDay" };

function limitText(value) {
  return value ? formatNumber(value) : t("usage.noLimit");
}

// A limit, marked when an admin set it rather than inheriting it.
function limitCell(row, name) {
  const set = row.override[name] !== null;
  return [h("span", { "data-limit": name }, limitText(row.limits[name])), set ? [" ", badge(t("usage.custom"), "accent")] : null];
}

function todayCell(row) {
  return [formatNumber(row.requests_today),
    row.refused_today ? h("span", { class: "sub error-text" }, t("usage.refused", { n: formatNumber(row.refused_today) })) : null];
}

function useColumns() {
  return [
    { label: t("usage.requestsPerMinute"), class: "nowrap", cell: (r) => limitCell(r, "requests_per_minute") },
    { label: t("usage.tokensPerDay"), class: "nowrap", cell: (r) => limitCell(r, "tokens_per_day") },
    { label: t("usage.thisMinute"), class: "num", cell: (r) => formatNumber(r.requests_last_minute) },
    { label: t("usage.today"), class: "num", cell: todayCell },
    { label: t("usage.tokensToday"), class: "nowrap", cell: (r) => usageAgainst(r.tokens_today, r.limits.tokens_per_day) },
  ];
}

// Ask for a user's or key's limits; resolves with the body to PUT, or null when cancelled.
async function limitsDialog(title, override, placeholders) {
  const inputs = Object.fromEntries(LIMITS.map((name) => [name, h("input", {
    type: "number", min: 0, step: 1, name, id: `limit-${name}`, inputmode: "numeric",
    value: override[name] ?? "", placeholder: placeholders[name],
  })]));
  const choice = await modal({
    title,
    id: "limits-dialog",
    content: [h("div", { class: "stack" },
      LIMITS.map((name) => h("label", { class: "field" }, h("span", {}, t(LABELS[name])), inputs[name])),
      h("p", { class: "hint" }, t("usage.limitHint")))],
    actions: [
      { label: t("common.cancel"), value: "cancel" },
      { label: t("common.save"), value: "ok", kind: "primary" },
    ],
  });
  if (choice !== "ok") return null;
  return Object.fromEntries(LIMITS.map((name) => [name, inputs[name].value === "" ? null : Number(inputs[name].value)]));
}

function isoDay(date) {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 10);
}

function exportsCard(timezone) {
  const today = new Date();
  const until = h("input", { type: "date", id: "export-until", value: isoDay(today) });
  const since = h("input", { type: "date", id: "export-since", value: isoDay(new Date(today.getTime() - 29 * 86400000)) });
  const usage = h("a", { class: "button", id: "export-usage", download: "" }, icon("download"), t("usage.exportUsage"));
  const audit = h("a", { class: "button", id: "export-audit", download: "" }, icon("download"), t("usage.exportAudit"));
  const update = () => {
    const query = new URLSearchParams({ since: since.value, until: until.value });
    usage.href = `/api/admin/usage/export?${query}`;
    audit.href = `/api/admin/audit/export?${query}`;
  };
  since.addEventListener("input", update);
  until.addEventListener("input", update);
  update();
  return card(t("usage.exports"),
    h("p", { class: "muted" }, t("usage.exportsHint", { timezone })),
    h("div", { class: "inline-form" },
      h("label", { class: "field" }, h("span", {}, t("usage.since")), since),
      h("label", { class: "field" }, h("span", {}, t("usage.until")), until),
      usage, audit));
}

export default {
  id: "usage",
  icon: "gauge",
  title: "admin.usage",

  async render(panel) {
    const defaultsArea = h("div", {});
    const usersArea = h("div", {});
    const keysArea = h("div", {});
    const exportsArea = h("div", {});

    const save = async (path, name, body) => {
      await api.put(path, body);
      toast(t("usage.saved", { name }));
      await load();
    };

    const load = async () => {
      let body;
      try {
        body = await api.get("/api/admin/quotas");
      } catch (error) {
        clear(usersArea, errorCard(error));
        return;
      }
      clear(defaultsArea,
        table([
          { label: t("usage.role"), cell: (r) => badge(t(`role.${r.role}`), r.role === "admin" ? "accent" : "neutral") },
          { label: t("usage.requestsPerMinute"), class: "num", cell: (r) => limitText(r.requests_per_minute) },
          { label: t("usage.tokensPerDay"), class: "num", cell: (r) => limitText(r.tokens_per_day) },
        ], Object.entries(body.defaults).map(([role, limits]) => ({ role, ...limits })), { id: "defaults-table", rowId: (r) => r.role }),
        h("p", { class: "hint" }, t("usage.defaultsHint", { timezone: body.timezone })));
      clear(usersArea, table([
        { label: t("users.user"), class: "nowrap", cell: (u) => [h("strong", {}, u.display_name || u.username), h("span", { class: "sub" }, `${u.username} · ${t(`role.${u.role}`)}`)] },
        ...useColumns(),
        {
          label: "", class: "actions", cell: (u) => actionButton(t("usage.edit"), async () => {
            const role = body.defaults[u.role] || {};
            const placeholders = Object.fromEntries(LIMITS.map((n) => [n, t("usage.userDefault", { value: limitText(role[n]) })]));
            const change = await limitsDialog(t("usage.editUser", { name: u.username }), u.override, placeholders);
            if (change) await save(`/api/admin/quotas/users/${u.id}`, u.username, change);
          }, { iconName: "edit", kind: "ghost" }),
        },
      ], body.users, { id: "quota-users-table", rowId: (u) => u.username }));
      clear(keysArea, table([
        { label: t("keys.name"), class: "nowrap", cell: (k) => [h("strong", {}, k.name), h("span", { class: "sub mono" }, `${k.prefix}… · ${k.username}`)] },
        ...useColumns(),
        {
          label: "", class: "actions", cell: (k) => actionButton(t("usage.edit"), async () => {
            const placeholders = Object.fromEntries(LIMITS.map((n) => [n, t("usage.keyDefault")]));
            const change = await limitsDialog(t("usage.editKey", { name: k.name }), k.override, placeholders);
            if (change) await save(`/api/admin/quotas/keys/${k.id}`, k.name, change);
          }, { iconName: "edit", kind: "ghost" }),
        },
      ], body.keys.filter((k) => k.active), { id: "quota-keys-table", rowId: (k) => k.name, empty: t("usage.noKeys") }));
      if (!exportsArea.firstChild) exportsArea.append(exportsCard(body.timezone));
    };

    clear(panel,
      pageHead(t("admin.usage"), t("usage.subtitle"), refreshButton(load)),
      card(t("usage.defaults"), defaultsArea),
      card(t("usage.users"), usersArea),
      card(t("usage.keys"), keysArea),
      exportsArea);
    await load();
  },
};
