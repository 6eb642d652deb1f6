// Watched folders, on the Documents tab: each source's folder, groups and schedule, its last run
// (counts, failures and warnings), and "Run now". A run goes on in the background on the server;
// the card follows it until it ends. Also says whether OCR can read scanned documents here.

import { api } from "../api.js";
import { clear, formatDate, formatNumber, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { actionButton, badge, chips, table } from "./common.js";

const POLL_MS = 2000; // while a source runs
const COUNTS = ["added", "updated", "unchanged", "removed", "skipped", "failed"];

function schedule(source) {
  const when = source.cron ? t("sources.cron", { cron: source.cron })
    : source.interval_minutes ? t("sources.every", { minutes: formatNumber(source.interval_minutes) })
      : t("sources.onDemand");
  return [h("span", {}, when),
    source.next_run ? h("span", { class: "sub" }, t("sources.next", { when: formatDate(source.next_run) })) : null];
}

function lastRun(source) {
  const run = source.last_run;
  if (source.running) {
    return [badge(t("sources.states.running"), "warning"), h("progress", { class: "inline-progress" })];
  }
  if (!run) return h("span", { class: "faint" }, t("sources.never"));
  const kind = run.state === "failed" ? "failed" : run.failed ? "warning" : "success";
  const counts = COUNTS.filter((key) => run[key]).map((key) => t(`sources.counts.${key}`, { n: run[key] }));
  const parts = [
    badge(t(`sources.states.${run.state}`), kind),
    h("span", { class: "sub" }, `${formatDate(run.started_at)} · ${t(`sources.triggers.${run.trigger}`)}`),
    h("span", { class: "sub", "data-counts": "" }, counts.join(" · ") || t("sources.noChange")),
  ];
  if (run.message) parts.push(h("span", { class: "sub error-text", "data-message": "" }, run.message));
  const problems = [
    ...run.errors.map((e) => h("li", { class: "error-text", "data-file": e.file }, h("strong", {}, e.file), ` ${e.reason}`)),
    ...run.warnings.map((w) => h("li", { class: "warning-text", "data-file": w.file }, h("strong", {}, w.file), ` ${w.message}`)),
  ];
  if (problems.length) {
    parts.push(h("details", { class: "more", "data-problems": "" },
      h("summary", {}, t("sources.problems", { failed: run.failed, warnings: run.warnings.length })),
      h("ul", { class: "checks" }, problems)));
  }
  return parts;
}

// The OCR line under the upload box: what scanned pages get on this server.
export function ocrNote(ocr) {
  if (!ocr) return null;
  return ocr.available
    ? h("p", { class: "hint", id: "ocr-status", "data-available": "true" },
      t("documents.ocrAvailable", { version: ocr.version || "tesseract", languages: ocr.languages }))
    : h("p", { class: "hint warning-text", id: "ocr-status", "data-available": "false" },
      t("documents.ocrMissing", { problem: ocr.problem }));
}

// Renders into `area`; calls `onOcr(status)` with each listing's OCR status and `onRunEnd()`
// when a run it followed has ended (its documents changed). Returns { reload, stop }.
export function followSources(area, { onOcr, onRunEnd }) {
  let timer = null;
  let stopped = false;
  let wasRunning = new Set();

  const runNow = async (source) => {
    await api.post(`/api/sources/${encodeURIComponent(source.name)}/run`);
    toast(t("sources.started", { name: source.name }));
    await load();
  };

  const load = async () => {
    clearTimeout(timer);
    let body;
    try {
      body = await api.get("/api/sources");
    } catch (error) {
      clear(area, h("p", { class: "form-error" }, error.message));
      return;
    }
    if (stopped) return;
    onOcr(body.ocr);
    const running = new Set(body.sources.filter((s) => s.running).map((s) => s.name));
    if ([...wasRunning].some((name) => !running.has(name))) onRunEnd();
    wasRunning = running;
    clear(area, body.sources.length
      ? table([
        { label: t("sources.name"), cell: (s) => [h("strong", {}, s.name), h("span", { class: "sub" }, s.path)] },
        { label: t("documents.groups"), cell: (s) => chips(s.groups) },
        { label: t("sources.schedule"), cell: schedule },
        { label: t("sources.documents"), cell: (s) => String(s.documents), class: "num" },
        { label: t("sources.lastRun"), cell: lastRun },
        { label: "", class: "actions", cell: (s) => actionButton(t("sources.runNow"), () => runNow(s), { iconName: "play" }) },
      ], body.sources, { id: "sources-table", rowId: (s) => s.name })
      : h("p", { class: "muted", id: "sources-table" }, t("sources.none")));
    if (running.size && !stopped) timer = setTimeout(load, POLL_MS);
  };

  load();
  return { reload: load, stop: () => { stopped = true; clearTimeout(timer); } };
}
