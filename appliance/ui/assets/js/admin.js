// The admin console: one tab per area, chosen by the URL's hash (#documents, #models, ...).

import { loadMe } from "./api.js";
import { clear, fillIcons, h, icon, toast } from "./dom.js";
import { startPage, t } from "./i18n.js";
import { renderShell } from "./shell.js";
import audit from "./admin/audit.js";
import documents from "./admin/documents.js";
import keys from "./admin/keys.js";
import models from "./admin/models.js";
import monitoring from "./admin/monitoring.js";
import usage from "./admin/usage.js";
import users from "./admin/users.js";

const TABS = [documents, models, monitoring, users, keys, usage, audit];
let active = null;
let cleanup = null;
let me = null;

function tabFromHash() {
  const id = location.hash.replace(/^#/, "");
  return TABS.find((tab) => tab.id === id) || TABS[0];
}

function renderTabs() {
  clear(document.getElementById("tabs"), TABS.map((tab) => h("a", {
    href: `#${tab.id}`, class: "tab", role: "tab", id: `tab-${tab.id}`,
    "aria-selected": String(tab === active), "aria-controls": "panel",
  }, icon(tab.icon), t(tab.title))));
}

async function show(tab) {
  if (cleanup) cleanup();
  cleanup = null;
  active = tab;
  renderTabs();
  document.title = `${t(tab.title)} · ${t("app.name")}`;
  const panel = document.getElementById("panel");
  clear(panel, h("p", { class: "loading" }, t("common.loading")));
  try {
    cleanup = (await tab.render(panel, { me })) || null;
  } catch (error) {
    clear(panel, h("div", { class: "card" }, h("p", { class: "form-error" }, error.message)));
  }
}

async function main() {
  fillIcons();
  startPage();
  document.title = t("app.name");
  try {
    me = await loadMe();
  } catch (error) {
    if (error.status !== 401) toast(error.message, { error: true });
    return;
  }
  renderShell(me, { page: "admin" });
  if (me.user.role !== "admin") {
    document.getElementById("forbidden").hidden = false;
    document.title = `${t("admin.forbidden.title")} · ${t("app.name")}`;
    return;
  }
  document.getElementById("console").hidden = false;
  window.addEventListener("hashchange", () => show(tabFromHash()));
  document.addEventListener("languagechange", () => show(active));
  await show(tabFromHash());
}

main();
