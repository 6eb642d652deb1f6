// Users: create, change role, groups and name, disable or enable, reset the password, delete;
// and the directory (LDAP / Active Directory) sign-in: whether it answers, its recent errors.

import { api } from "../api.js";
import { confirmDialog, modal, promptDialog } from "../dialog.js";
import { clear, formatDate, h, icon, toast } from "../dom.js";
import { t } from "../i18n.js";
import { actionButton, badge, card, chips, errorCard, pageHead, refreshButton, splitGroups, table } from "./common.js";

function roleSelect(roles, value, id) {
  return h("select", { name: "role", id }, roles.map((r) => h("option", { value: r, selected: r === value }, t(`role.${r}`))));
}

async function editDialog(user, roles) {
  const fromDirectory = user.source === "directory";
  const name = h("input", { name: "display_name", value: user.display_name, maxlength: 200, id: "edit-display-name" });
  const role = roleSelect(roles, user.role, "edit-role");
  const groups = h("input", { name: "groups", value: user.groups.join(", "), id: "edit-groups", autocomplete: "off" });
  const active = h("input", { type: "checkbox", name: "active", checked: user.active, id: "edit-active" });
  // A directory user's role and groups are set by the group mapping at every sign-in.
  role.disabled = groups.disabled = fromDirectory;
  const choice = await modal({
    title: t("users.editTitle", { name: user.username }),
    id: "edit-user-dialog",
    content: [h("div", { class: "stack" },
      h("label", { class: "field" }, h("span", {}, t("users.displayName")), name),
      h("label", { class: "field" }, h("span", {}, t("users.role")), role),
      h("label", { class: "field" }, h("span", {}, t("users.groups")), groups,
        h("span", { class: "hint" }, fromDirectory ? t("users.directoryHint") : t("users.groupsHint"))),
      h("label", { class: "row" }, active, h("span", {}, t("users.activeLabel"))))],
    actions: [
      { label: t("common.cancel"), value: "cancel" },
      { label: t("common.save"), value: "ok", kind: "primary" },
    ],
  });
  if (choice !== "ok") return null;
  if (fromDirectory) return { display_name: name.value, active: active.checked };
  return { display_name: name.value, role: role.value, groups: splitGroups(groups.value), active: active.checked };
}

function userCell(u) {
  return [
    h("strong", {}, u.display_name || u.username),
    u.source === "directory" ? [" ", h("span", { class: "badge accent", "data-source": "directory", title: u.directory_dn || "" }, t("users.directoryUser"))] : null,
    h("span", { class: "sub" }, u.username),
  ];
}

function stateCell(u) {
  if (u.directory_state) {
    return [badge(t("users.shutOut"), "danger"), h("span", { class: "sub" }, t(`users.directoryState.${u.directory_state}`))];
  }
  return badge(u.active ? t("users.active") : t("users.disabled"), u.active ? "success" : "danger");
}

function stat(label, value, sub = "") {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value text" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

// The directory card: configured or not, reachable now, how it is used, recent sign-in errors.
function directoryCard(status) {
  if (!status.configured) {
    return card(t("directory.title"), h("p", { class: "muted", id: "directory-status", "data-state": "off" }, t("directory.notConfigured")));
  }
  const reachable = status.reachable
    ? badge(t("directory.reachable"), "success")
    : badge(t("directory.unreachable"), "danger");
  const transport = badge(t(`directory.transport.${status.transport}`), status.transport === "plain" ? "warning" : "neutral");
  const method = status.method || status.nested_groups;
  const errors = status.errors.length
    ? table([
      { label: t("directory.when"), class: "date", cell: (e) => formatDate(e.ts) },
      { label: t("directory.user"), class: "nowrap", cell: (e) => e.username },
      { label: t("directory.message"), class: "wide", cell: (e) => e.message },
    ], status.errors, { id: "directory-errors" })
    : h("p", { class: "muted", id: "directory-errors" }, t("directory.noErrors"));
  return card(t("directory.title"),
    h("div", { class: "stats", id: "directory-status", "data-state": status.reachable ? "reachable" : "unreachable" },
      stat(t("directory.connection"), reachable),
      stat(t("directory.server"), status.url, transport),
      stat(t("directory.nesting"), t(`directory.method.${method}`)),
      stat(t("directory.mapped"), String(status.mapped_groups),
        status.check_minutes ? t("directory.checkEvery", { minutes: status.check_minutes }) : t("directory.checkOff")),
      stat(t("directory.lastSuccess"), status.last_success_at ? formatDate(status.last_success_at) : t("users.never"))),
    status.error ? h("p", { class: "form-error", id: "directory-error" }, status.error) : null,
    h("h3", {}, t("directory.errors")),
    errors);
}

export default {
  id: "users",
  icon: "users",
  title: "admin.users",

  async render(panel, { me }) {
    const listArea = h("div", {});
    const directoryArea = h("div", {});
    let roles = ["employee", "admin"];

    const loadDirectory = async () => {
      try {
        clear(directoryArea, directoryCard(await api.get("/api/admin/directory")));
      } catch (error) {
        clear(directoryArea, errorCard(error));
      }
    };

    const load = async () => {
      let body;
      const directory = loadDirectory();  // probes the server: in parallel with the list
      try {
        body = await api.get("/api/admin/users");
      } catch (error) {
        clear(listArea, errorCard(error));
        await directory;
        return;
      }
      roles = body.roles || roles;
      clear(listArea, table([
        { label: t("users.user"), class: "nowrap", cell: userCell },
        { label: t("users.role"), cell: (u) => badge(t(`role.${u.role}`), u.role === "admin" ? "accent" : "neutral") },
        { label: t("users.groups"), cell: (u) => chips(u.groups) },
        { label: t("users.state"), cell: stateCell },
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
            u.source === "directory" ? null : actionButton(t("users.resetPassword"), async () => {
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
      await directory;
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
      directoryArea,
      card(t("users.new"), h("p", { class: "muted" }, t("users.newHint")), form),
      card(t("users.list"), listArea));
    await load();
  },
};
