// Download a conversation as Markdown or JSON: plain links, so the browser saves the file the
// server names (the session cookie rides along on a GET; no CSRF token is needed).

import { modal } from "./dialog.js";
import { h, icon } from "./dom.js";
import { currentLanguage, t } from "./i18n.js";

export function exportUrl(conversationId, format) {
  const query = new URLSearchParams({ format, lang: currentLanguage() });
  return `/api/conversations/${encodeURIComponent(conversationId)}/export?${query}`;
}

export async function exportDialog(conversation) {
  const link = (format, label) => h("a", {
    class: "button", href: exportUrl(conversation.id, format), download: "", id: `export-${format}`,
  }, icon("download"), label);
  await modal({
    title: t("export.title"),
    id: "export-dialog",
    content: [
      h("p", { class: "muted" }, t("export.body", { title: conversation.title })),
      h("div", { class: "row" }, link("md", t("export.markdown")), link("json", t("export.json"))),
    ],
    actions: [{ label: t("common.close"), value: "cancel" }],
  });
}
