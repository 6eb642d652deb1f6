// API keys: create one for a user (the secret is shown once), list them, revoke.

import { api } from "../api.js";
import { confirmDialog, secretDialog } from "../dialog.js";
import { clear, formatDate, h, icon, toast } from "../dom.js";
import { t } from "../i18n.js";
import { actionButton, badge, card, errorCard, pageHead, refreshButton, table } from "./common.js";

export default {
  id: "keys",
  icon: "key",
  title: "admin.keys",

  async render(panel) {
    const listArea = h("div", {});
    const userSelect = h("select", { name: "user_id", id: "key-user", required: true });
    const name = h("input", { name: "name", id: "key-name", required: true, maxlength: 100, autocomplete: "off", placeholder: t("keys.namePlaceholder") });

    const load = async () => {
      let keys;
      let users;
      try {
        [keys, users] = await Promise.all([api.get("/api/admin/keys"), api.get("/api/admin/users")]);
      } catch (error) {
        clear(listArea, errorCard(error));
        return;
      }
      const selected = userSelect.value;
      clear(userSelect, users.users.map((u) => h("option", { value: u.id, selected: String(u.id) === selected }, `${u.display_name || u.username} (${u.username})`)));
      clear(listArea, table([
        { label: t("keys.name"), class: "nowrap", cell: (k) => [h("strong", {}, k.name), h("span", { class: "sub mono" }, `${k.prefix}…`)] },
        { label: t("keys.user"), cell: (k) => k.username },
        { label: t("keys.state"), cell: (k) => badge(k.active ? t("keys.active") : t("keys.revoked"), k.active ? "success" : "neutral") },
        { label: t("keys.created"), cell: (k) => formatDate(k.created_at), class: "date" },
        { label: t("keys.lastUsed"), class: "date", cell: (k) => (k.last_used_at ? formatDate(k.last_used_at) : h("span", { class: "faint" }, t("users.never"))) },
        {
          label: "", class: "actions", cell: (k) => (k.active ? actionButton(t("keys.revoke"), async () => {
            const ok = await confirmDialog({ title: t("keys.revokeTitle", { name: k.name }), body: t("keys.revokeBody"), confirm: t("keys.revoke"), danger: true });
            if (!ok) return;
            await api.delete(`/api/admin/keys/${k.id}`);
            toast(t("keys.revokedToast", { name: k.name }));
            await load();
          }, { iconName: "trash", kind: "ghost" }) : null),
        },
      ], keys.keys, { id: "keys-table", rowId: (k) => k.name, empty: t("keys.none") }));
    };

    const form = h("form", { class: "inline-form", id: "new-key-form" },
      h("label", { class: "field" }, h("span", {}, t("keys.user")), userSelect),
      h("label", { class: "field" }, h("span", {}, t("keys.name")), name),
      h("button", { type: "submit", class: "button primary" }, icon("plus"), t("keys.create")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const created = await api.post("/api/admin/keys", { user_id: Number(userSelect.value), name: name.value.trim() });
        form.reset();
        await secretDialog({ title: t("keys.createdTitle", { name: created.name }), body: t("keys.secretOnce"), secret: created.key });
        await load();
      } catch (error) {
        toast(error.message, { error: true });
      }
    });

    clear(panel,
      pageHead(t("admin.keys"), t("keys.subtitle"), refreshButton(load)),
      card(t("keys.new"), h("p", { class: "muted" }, t("keys.newHint")), form),
      card(t("keys.list"), listArea));
    await load();
  },
};
