// Monitoring: headline figures, charts of the stored series, and alerts (firing and resolved).

import { api } from "../api.js";
import { lineChart } from "../chart.js";
import { clear, formatBytes, formatDate, formatNumber, h, icon } from "../dom.js";
import { t } from "../i18n.js";
import { badge, card, errorCard, pageHead, refreshButton } from "./common.js";

const RANGES = { "1h": 60, "24h": 900, "7d": 3600 * 3 }; // range -> step in seconds
const CHARTS = [
  { metric: "latency_seconds", aggregate: "p95", title: "monitoring.latency", unit: "s", scale: 1, digits: 2 },
  { metric: "requests", aggregate: "rate", title: "monitoring.throughput", unit: "/min", scale: 60, digits: 1 },
  { metric: "error", aggregate: "avg", title: "monitoring.errors", unit: "%", scale: 100, digits: 1 },
  { metric: "rss_bytes", aggregate: "max", title: "monitoring.memory", unit: "MiB", scale: 1 / 2 ** 20, digits: 0 },
  { metric: "tokens_per_second", aggregate: "avg", title: "monitoring.tokens", unit: "tok/s", scale: 1, digits: 1 },
  { metric: "golden_accuracy", aggregate: "last", title: "monitoring.accuracy", unit: "%", scale: 100, digits: 0 },
];
const REFRESH_MS = 30000;

function percent(value) {
  return value === null || value === undefined ? "–" : `${formatNumber(value * 100, 1)}%`;
}

function seconds(value) {
  return value === null || value === undefined ? "–" : `${formatNumber(value, 2)} s`;
}

function stat(label, value, sub = "") {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

function alertRow(alert) {
  const firing = alert.state === "firing";
  return h("div", { class: "alert-row", "data-state": alert.state },
    h("span", { class: `badge ${firing ? `firing ${alert.severity}` : "resolved"}` }, icon(firing ? "bell" : "check"),
      t(`monitoring.state.${alert.state}`)),
    h("div", { class: "text" },
      h("strong", {}, alert.rule), " ", badge(alert.severity, alert.severity === "critical" ? "danger" : alert.severity === "warning" ? "warning" : "neutral"),
      h("p", { class: "muted" }, alert.message),
      h("span", { class: "faint" }, firing
        ? t("monitoring.since", { when: formatDate(alert.started_at) })
        : t("monitoring.resolvedAt", { started: formatDate(alert.started_at), resolved: formatDate(alert.resolved_at) }))));
}

export default {
  id: "monitoring",
  icon: "chart",
  title: "admin.monitoring",

  async render(panel) {
    let range = "24h";
    const select = h("select", { id: "range", "aria-label": t("monitoring.range") },
      Object.keys(RANGES).map((r) => h("option", { value: r, selected: r === range }, t(`monitoring.ranges.${r}`))));
    const body = h("div", {});

    const load = async () => {
      const step = RANGES[range];
      const now = Date.now() / 1000;
      let summary;
      let alerts;
      let status;
      try {
        [summary, alerts, status] = await Promise.all([
          api.get(`/api/metrics/summary?since=${range}`),
          api.get("/api/alerts?limit=50"),
          api.get("/api/status"),
        ]);
      } catch (error) {
        clear(body, errorCard(error));
        return;
      }
      const series = await Promise.all(CHARTS.map((c) => api.get(
        `/api/metrics/series?metric=${c.metric}&aggregate=${c.aggregate}&since=${range}&step=${step}`).catch(() => null)));
      const firing = alerts.alerts.filter((a) => a.state === "firing");
      const resolved = alerts.alerts.filter((a) => a.state !== "firing");
      const latest = summary.latest_sample || {};
      const engine = status.model?.engine || {};
      clear(body,
        h("div", { class: "stats", id: "summary" },
          stat(t("monitoring.requests"), formatNumber(summary.requests), t("monitoring.perSecond", { rate: formatNumber(summary.requests_per_second, 3) })),
          stat(t("monitoring.p95"), seconds(summary.latency_p95_seconds), t("monitoring.p50", { value: seconds(summary.latency_p50_seconds) })),
          stat(t("monitoring.errorRate"), percent(summary.error_rate), t("monitoring.clientErrors", { value: percent(summary.client_error_rate) })),
          stat(t("monitoring.cacheHits"), percent(summary.cache_hit_rate)),
          stat(t("monitoring.feedback"), h("span", { class: "row" }, icon("up"), String(summary.feedback.up), icon("down"), String(summary.feedback.down))),
          stat(t("monitoring.golden"), summary.golden ? percent(summary.golden.score) : "–",
            summary.golden ? t("monitoring.goldenSub", { passed: summary.golden.passed, questions: summary.golden.questions }) : ""),
          stat(t("monitoring.memoryNow"), latest.rss_bytes ? formatBytes(latest.rss_bytes) : "–",
            latest.memory_used_percent !== undefined && latest.memory_used_percent !== null ? t("monitoring.systemMemory", { value: formatNumber(latest.memory_used_percent, 0) }) : ""),
          stat(t("monitoring.slots"), engine.slots_total !== undefined ? `${engine.slots_busy} / ${engine.slots_total}` : "–",
            t("monitoring.queue", { value: engine.queue_depth ?? latest.queue_depth ?? 0 }))),
        card(h("span", {}, icon("bell"), " ", t("monitoring.alerts"), " ", badge(String(firing.length), firing.length ? "danger" : "success")),
          h("div", { id: "alerts" }, firing.length ? firing.map(alertRow) : h("p", { class: "muted", id: "no-firing" }, t("monitoring.noFiring")),
            resolved.length ? h("details", { class: "more" }, h("summary", {}, t("monitoring.resolvedCount", { count: resolved.length })), resolved.map(alertRow)) : null)),
        h("div", { class: "grid-2", id: "charts" }, CHARTS.map((c, i) => {
          const data = series[i];
          const points = data ? data.points : [];
          const last = [...points].reverse().find((p) => p.value !== null);
          return h("section", { class: "card chart-card", "data-metric": c.metric },
            h("div", { class: "card-head" }, h("h2", {}, t(c.title)), h("span", { class: "spacer" }),
              h("span", { class: "value" }, last ? `${formatNumber(last.value * c.scale, c.digits)} ${c.unit}` : "–")),
            lineChart(points, { since: data ? data.since : now - 86400, until: data ? data.until : now, scale: c.scale, digits: c.digits, label: t(c.title) }));
        })),
        h("p", { class: "faint" }, t("monitoring.png"), " ",
          h("a", { href: `/api/metrics/chart.png?since=${range}`, target: "_blank", rel: "noopener" }, t("monitoring.pngLink"))));
    };

    select.addEventListener("change", () => {
      range = select.value;
      load();
    });
    clear(panel, pageHead(t("admin.monitoring"), t("monitoring.subtitle"), select, refreshButton(load)), body);
    await load();
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  },
};
