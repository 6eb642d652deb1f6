// The signed-in user's own use of their quota, shown in the account menu: tokens today and
// requests in the last minute, each against its limit.

import { api } from "./api.js";
import { clear, formatDuration, formatNumber, h } from "./dom.js";
import { t } from "./i18n.js";

// "1,234 of 200,000", a bar when there is a limit; "1,234 (no limit)" otherwise.
export function usageAgainst(used, limit) {
  if (!limit) return [h("span", {}, t("usage.unlimited", { used: formatNumber(used) }))];
  return [
    h("span", {}, t("usage.ofLimit", { used: formatNumber(used), limit: formatNumber(limit) })),
    h("progress", { class: "inline-progress", max: limit, value: Math.min(used, limit) }),
  ];
}

export async function renderOwnUsage(el) {
  clear(el, h("p", { class: "hint" }, t("common.loading")));
  let usage;
  try {
    usage = await api.get("/api/usage", { redirectOn401: false });
  } catch (error) {
    clear(el, h("p", { class: "hint" }, error.message));
    return;
  }
  const mine = usage.user;
  clear(el,
    h("p", { class: "eyebrow" }, t("usage.title")),
    h("div", { class: "usage-line", id: "my-tokens" }, h("span", { class: "muted" }, t("usage.tokensToday")),
      usageAgainst(mine.tokens_today, mine.limits.tokens_per_day)),
    h("div", { class: "usage-line", id: "my-requests" }, h("span", { class: "muted" }, t("usage.requestsMinute")),
      usageAgainst(mine.requests_last_minute, mine.limits.requests_per_minute)),
    mine.limits.tokens_per_day
      ? h("p", { class: "hint" }, t("usage.resets", { time: formatDuration(mine.tokens_reset_seconds) }))
      : null);
}
