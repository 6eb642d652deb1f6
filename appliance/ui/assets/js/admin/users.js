// Users: create, change role, groups and name, disable or enable, reset the password, delete.

import { api } from "../api.js";
import { confirmDialog, modal, promptDialog } from "../dialog.js";
import { clear, formatDate, h, icon, toast } from "../dom.js";
import { t } from "../i18n.js";
import { actionButton, badge, card, chips, errorCard, pageHead, refreshButton, splitGroups, table } from "./common.js";

function roleSelect(roles, value, id) {
  return h("select", { name: "role", id }, roles.map((r) => h("option", { value: r, selected: r === value }, t(`role.${r}`))));
}

async function editDialog(user, roles) {
  const name = h("input", { name: "display_name", value: user.display_name, maxlength: 200, id: "edit-display-name" });
  const role = roleSelect(roles, user.role, "edit-role");
  const groups = h("input", { name: "groups", value: user.groups.join(", "), id: "edit-groups", autocomplete: "off" });
  const active = h("input", { type: "checkbox", name: "active", checked: user.active, id: "edit-active" });
  const choice = await modal({
    title: t("users.editTitle", { name: user.username }),
    id: "edit-user-dialog",
    content: [h("div", { class: "stack" },
      h("label", { class: "field" }, h("span", {}, t("users.displayName")), name),
      h("label", { class: "field" }, h("span", {}, t("users.role")), role),
      h("label", { class: "field" }, h("span", {}, t("users.groups")), groups, h("span", { class: "hint" }, t("users.groupsHint"))),
      h("label", { class: "row" }, active, h("span", {}, t("users.activeLabel"))))],
    actions: [
      { label: t("common.cancel"), value: "cancel" },
      { label: t("common.save"), value: "ok", kind: "primary" },
    ],
  });
  if (choice !== "ok") return null;
  return { display_name: name.value, role: role.value, groups: splitGroups(groups.value), active: active.checked };
}

export default {
  id: "users",
  icon: "users",
  title: "admin.users",

  async render(panel, { me }) {
    const listArea = h("div", {});
    let roles = ["employee", "admin"];

    const load = async () => {
      let body;
      try {
        body = await api.get("/api/admin/users");
      } catch (error) {
        clear(listArea, errorCard(error));
        return;
      }
      roles = body.roles || roles;
      clear(listArea, table([
        { label: t("users.user"), class: "nowrap", cell: (u) => [h("strong", {}, u.display_name || u.username), h("span", { class: "sub" }, u.username)] },
        { label: t("users.role"), cell: (u) => badge(t(`role.${u.role}`), u.role === "admin" ? "accent" : "neutral") },
        { label: t("users.groups"), cell: (u) => chips(u.groups) },
        { label: t("users.state"), cell: (u) => badge(u.active ? t("users.active") : t("users.disabled"), u.active ? "success" : "danger") },
        { label: t("users.lastLogin"), class: "date", cell: (u) => (u.last_login_at ? formatDate(u.last_login_at) : h("span", { class: "faint" }, t("users.never"))) },
        {
          label: "", class: "actions", cell: (u) => [
            actionButton(t("common.edit"), async () => {
              const change = await editDialog(u, roles);
              if (!change) return;
              await api.patch(`/api/admin/users/${u.id}`, change);
              toast(t("users.saved", { name: u.username }));
              await load();
            }, { iconName: "edit", kind: "ghost" }),
            actionButton(t("users.resetPassword"), async () => {
              const password = await promptDialog({
                title: t("users.resetTitle", { name: u.username }), label: t("users.newPassword"), type: "password",
                hint: t("users.passwordHint"), confirm: t("users.resetPassword"),
              });
              if (!password) return;
              await api.patch(`/api/admin/users/${u.id}`, { password });
              toast(t("users.passwordReset", { name: u.username }));
            }, { iconName: "key", kind: "ghost" }),
            u.id !== me.user.id ? actionButton(t("common.delete"), async () => {
              const ok = await confirmDialog({ title: t("users.deleteTitle", { name: u.username }), body: t("users.deleteBody"), confirm: t("common.delete"), danger: true });
              if (!ok) return;
              await api.delete(`/api/admin/users/${u.id}`);
              toast(t("users.deleted", { name: u.username }));
              await load();
            }, { iconName: "trash", kind: "ghost" }) : null,
          ],
        },
      ], body.users, { id: "users-table", rowId: (u) => u.username }));
    };

    const username = h("input", { name: "username", id: "new-username", required: true, maxlength: 64, autocomplete: "off" });
    const displayName = h("input", { name: "display_name", id: "new-display-name", maxlength: 200, autocomplete: "off" });
    const password = h("input", { name: "password", id: "new-password", type: "password", autocomplete: "new-password" });
    const role = roleSelect(roles, "employee", "new-role");
    const groups = h("input", { name: "groups", id: "new-groups", autocomplete: "off", placeholder: t("users.groupsPlaceholder") });
    const form = h("form", { class: "inline-form", id: "new-user-form" },
      h("label", { class: "field" }, h("span", {}, t("users.username")), username),
      h("label", { class: "field" }, h("span", {}, t("users.displayName")), displayName),
      h("label", { class: "field" }, h("span", {}, t("users.password")), password),
      h("label", { class: "field" }, h("span", {}, t("users.role")), role),
      h("label", { class: "field" }, h("span", {}, t("users.groups")), groups),
      h("button", { type: "submit", class: "button primary" }, icon("plus"), t("users.create")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        username: username.value.trim(), display_name: displayName.value.trim(), role: role.value,
        password: password.value || null,
      };
      if (groups.value.trim()) body.groups = splitGroups(groups.value);
      try {
        await api.post("/api/admin/users", body);
        toast(t("users.created", { name: body.username }));
        form.reset();
        await load();
      } catch (error) {
        toast(error.message, { error: true });
      }
    });

    clear(panel,
      pageHead(t("admin.users"), t("users.subtitle"), refreshButton(load)),
      card(t("users.new"), h("p", { class: "muted" }, t("users.newHint")), form),
      card(t("users.list"), listArea));
    await load();
  },
};
