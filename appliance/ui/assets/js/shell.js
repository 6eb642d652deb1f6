// The top bar's right side, shared by the chat and the console: language switch, the way to the
// other page, and the account menu.

import { logout } from "./api.js";
import { clear, h, icon } from "./dom.js";
import { LANGUAGES, currentLanguage, setLanguage, t } from "./i18n.js";
import { renderOwnUsage } from "./usage.js";

export function languageSwitch() {
  const wrap = h("span", { class: "lang-switch", role: "group", "aria-label": "Language / 언어" });
  const render = () => clear(wrap, LANGUAGES.map(([code, name]) => h("button", {
    type: "button", lang: code, "data-lang": code, "aria-pressed": String(code === currentLanguage()),
    onclick: () => setLanguage(code),
  }, name)));
  render();
  document.addEventListener("languagechange", render);
  return wrap;
}

function initials(user) {
  const name = (user.display_name || user.username || "?").trim();
  return name.slice(0, 1).toUpperCase();
}

export function renderShell(me, { page }) {
  const root = document.getElementById("shell");
  const user = me.user;
  const list = h("div", { class: "menu-list", id: "account-menu", hidden: true });
  const usage = h("div", { class: "usage-box", id: "my-usage" });
  const button = h("button", {
    type: "button", class: "menu-button", id: "account-button", "aria-haspopup": "true",
    "aria-expanded": "false", "aria-controls": "account-menu",
  }, h("span", { class: "avatar" }, initials(user)), h("span", { class: "name" }, user.display_name || user.username));
  const close = () => {
    list.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    list.hidden = !list.hidden;
    button.setAttribute("aria-expanded", String(!list.hidden));
    if (!list.hidden) renderOwnUsage(usage); // fresh each time the menu opens
  });
  document.addEventListener("click", (event) => {
    if (!list.contains(event.target)) close();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });

  const renderMenu = () => {
    const items = [
      h("div", { class: "who" },
        h("strong", {}, user.display_name || user.username),
        h("span", { class: "muted" }, `${user.username} · ${t(`role.${user.role}`)}`),
        user.groups?.length ? h("div", { class: "chips" }, user.groups.map((g) => h("span", { class: "badge neutral" }, g))) : null),
      usage,
    ];
    if (page === "admin") items.push(h("a", { href: "/", id: "to-chat" }, icon("chat"), t("nav.chat")));
    if (page === "chat" && user.role === "admin") items.push(h("a", { href: "/admin", id: "to-admin" }, icon("settings"), t("nav.admin")));
    if (me.auth_enabled !== false) {
      items.push(h("button", { type: "button", id: "logout", onclick: () => logout() }, icon("logout"), t("nav.logout")));
    } else {
      items.push(h("p", { class: "hint" }, t("nav.authOff")));
    }
    clear(list, items);
  };
  renderMenu();
  document.addEventListener("languagechange", () => {
    renderMenu();
    if (!list.hidden) renderOwnUsage(usage);
  });
  const shortcut = page === "chat" && user.role === "admin"
    ? h("a", { href: "/admin", class: "button ghost small hide-phone", id: "admin-link" }, icon("settings"), h("span", { "data-i18n": "nav.admin" }, t("nav.admin")))
    : page === "admin"
      ? h("a", { href: "/", class: "button ghost small hide-phone", id: "chat-link" }, icon("chat"), h("span", { "data-i18n": "nav.chat" }, t("nav.chat")))
      : null;
  clear(root, shortcut, languageSwitch(), h("span", { class: "menu" }, button, list));
}
