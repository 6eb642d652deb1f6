// Model versions: state and validation results; validate, activate now, schedule, roll back;
// pending schedules, probation and the history of every change. Validations and activations run
// on the server in the background; the tab follows them until they finish.

import { api } from "../api.js";
import { confirmDialog, modal } from "../dialog.js";
import { clear, formatDate, formatNumber, formatValue, h, toast } from "../dom.js";
import { t } from "../i18n.js";
import { actionButton, badge, card, errorCard, pageHead, refreshButton, table } from "./common.js";

const path = (v) => `/api/models/${encodeURIComponent(v.name)}/${encodeURIComponent(v.version)}`;

const POLL_MS = 2000; // while a validation, an activation or a re-embedding runs

function validationSummary(version) {
  const validation = version.validation || {};
  if (validation.running) {
    return [badge(t("models.validating"), "warning"),
      h("span", { class: "sub", "data-step": validation.step || "" }, t("models.step", { step: validation.step || "…" })),
      h("progress", { class: "inline-progress" })];
  }
  if (!Object.keys(validation).length) return h("span", { class: "faint" }, t("models.notValidated"));
  const checks = validation.checks || {};
  const golden = checks.golden;
  const parts = [badge(validation.ok ? t("models.passed") : t("models.failed"), validation.ok ? "success" : "danger")];
  if (golden) {
    parts.push(h("span", { class: "sub" }, t("models.golden", {
      score: formatNumber((golden.score || 0) * 100, 0), p95: formatNumber(golden.latency_p95, 1),
    })));
  }
  // Good answers per language, quoted and generated: auto mode serves each language the better.
  const answers = (golden && golden.answers) || (version.manifest && version.manifest.answer_figures) || null;
  if (answers) {
    const served = (golden && golden.served_modes) || {};
    for (const [lang, byMode] of Object.entries(answers)) {
      const rate = (mode) => byMode[mode] ? `${formatNumber((byMode[mode].good || 0) * 100, 0)}%` : "–";
      const mode = served[lang] || ((byMode.generative?.good || 0) > (byMode.extractive?.good || 0) ? "generative" : "extractive");
      parts.push(h("span", { class: "sub", "data-answers": lang, "data-mode": mode }, t("models.answers", {
        lang: t(`models.lang.${lang}`), extractive: rate("extractive"), generative: rate("generative"),
        mode: t(`models.modes.${mode}`),
      })));
    }
  }
  const reference = checks.golden_reference;
  if (reference) {
    parts.push(h("span", { class: "sub", "data-reference": "" }, t("models.goldenReference", {
      score: formatNumber((reference.score || 0) * 100, 0), p95: formatNumber(reference.latency_p95, 1),
    })));
  }
  if (validation.reason) parts.push(h("span", { class: "sub" }, validation.reason));
  const rows = [];
  for (const [name, check] of Object.entries(checks)) {
    for (const [key, value] of Object.entries(check || {})) {
      if (value === null || typeof value === "object") continue;
      rows.push(h("li", {}, h("span", { class: "faint" }, `${name}.${key} `), h("strong", {}, formatValue(value))));
    }
  }
  if (validation.at) rows.push(h("li", {}, h("span", { class: "faint" }, `${t("models.validatedAt")} `), formatDate(validation.at)));
  if (rows.length) parts.push(h("details", { class: "more" }, h("summary", {}, t("models.details")), h("ul", { class: "checks" }, rows)));
  return parts;
}

// The state column: the state, and the activation running (its step, re-embedding progress) or
// the last one that failed.
function stateSummary(version) {
  const activation = version.activation || {};
  const parts = [badge(t(`models.states.${version.state}`), version.state)];
  if (version.serving) parts.push(h("span", { class: "sub" }, t("models.serving")));
  if (activation.running) {
    const step = activation.step || "starting";
    parts.push(h("span", { class: "sub", "data-activation-step": step }, t(`models.activationSteps.${step}`)));
    const reembed = activation.reembed;
    if (step === "reembed" && reembed && reembed.chunks_total) {
      parts.push(h("progress", { class: "inline-progress", max: reembed.chunks_total, value: reembed.chunks_done }),
        h("span", { class: "sub" }, t("models.reembedProgress", { done: formatNumber(reembed.chunks_done, 0), total: formatNumber(reembed.chunks_total, 0) })));
    } else {
      parts.push(h("progress", { class: "inline-progress" }));
    }
  } else if (activation.ok === false && version.state !== "active") {
    parts.push(h("span", { class: "sub error-text", "data-activation-failed": "" },
      t("models.activationFailed", { reason: activation.reason || "" })));
  }
  return parts;
}

async function scheduleDialog(version) {
  const at = h("input", { type: "datetime-local", name: "at", id: "schedule-at" });
  const choice = await modal({
    title: t("models.scheduleTitle", { version: `${version.name}/${version.version}` }),
    id: "schedule-dialog",
    content: [
      h("p", { class: "muted" }, t("models.scheduleBody")),
      h("label", { class: "field" }, h("span", {}, t("models.scheduleAt")), at, h("span", { class: "hint" }, t("models.scheduleHint"))),
    ],
    actions: [
      { label: t("common.cancel"), value: "cancel" },
      { label: t("models.schedule"), value: "ok", kind: "primary" },
    ],
  });
  if (choice !== "ok") return null;
  // datetime-local has no zone: send the browser's offset, so the server runs it at that moment.
  return { at: at.value ? new Date(at.value).toISOString() : null };
}

export default {
  id: "models",
  icon: "models",
  title: "admin.models",

  async render(panel) {
    let timer = null;
    let stopped = false;
    let following = null; // the version whose activation this tab saw running
    const load = async () => {
      clearTimeout(timer);
      let data;
      let history;
      try {
        [data, history] = await Promise.all([api.get("/api/models/"), api.get("/api/models/history?limit=100")]);
      } catch (error) {
        clear(panel, pageHead(t("admin.models"), "", refreshButton(load)), errorCard(error));
        return;
      }
      const act = async (label, request) => {
        await request();
        toast(label);
        await load();
      };
      const versions = table([
        {
          label: t("models.version"), class: "nowrap",
          cell: (v) => [h("strong", { title: v.path }, `${v.name}/${v.version}`),
            h("span", { class: "sub", "data-kind": v.kind }, kindLabel(v))],
        },
        { label: t("models.state"), cell: stateSummary },
        { label: t("models.validation"), cell: validationSummary, class: "wide" },
        {
          label: "", class: "actions", cell: (v) => [
            !["active", "validating", "activating"].includes(v.state) ? actionButton(t("models.validate"), () => act(t("models.validationStarted"), () => api.post(`${path(v)}/validate`)), { iconName: "check", kind: "ghost" }) : null,
            ["ready", "active"].includes(v.state) && v.state !== "active" ? actionButton(t("models.schedule"), async () => {
              const body = await scheduleDialog(v);
              if (body) await act(t("models.scheduled"), () => api.post(`${path(v)}/schedule`, body));
            }, { iconName: "clock", kind: "ghost" }) : null,
            v.state === "ready" ? actionButton(t("models.activate"), async () => {
              const ok = await confirmDialog({ title: t("models.activateTitle", { version: `${v.name}/${v.version}` }), body: t("models.activateBody"), confirm: t("models.activate") });
              if (ok) await act(t("models.activationStarted"), () => api.post(`${path(v)}/activate`, { reason: "admin console" }));
            }, { iconName: "play", kind: "primary" }) : null,
          ],
        },
      ], data.versions, { id: "versions-table", rowId: (v) => `${v.name}/${v.version}`, empty: t("models.none") });

      const schedules = table([
        { label: t("models.version"), cell: (s) => `${s.name}/${s.version}` },
        { label: t("models.runAt"), cell: (s) => formatDate(s.run_at), class: "date" },
        { label: t("models.reason"), cell: (s) => s.reason || "" },
        { label: "", class: "actions", cell: (s) => actionButton(t("common.cancel"), () => act(t("models.cancelled"), () => api.delete(`/api/models/schedules/${encodeURIComponent(s.id)}`)), { kind: "ghost" }) },
      ], data.schedules || [], { id: "schedules-table", empty: t("models.noSchedules") });

      const probation = data.probation;
      const events = table([
        { label: t("models.when"), cell: (e) => formatDate(e.at), class: "date" },
        { label: t("models.event"), cell: (e) => badge(e.event, /fail|rolled|interrupted/.test(e.event) ? "warning" : "neutral") },
        { label: t("models.version"), cell: (e) => `${e.name}/${e.version}` },
        { label: t("models.actor"), cell: (e) => e.actor },
        { label: t("models.reason"), cell: (e) => e.reason || (e.previous ? t("models.previous", { previous: e.previous }) : "") },
      ], history.history, { id: "history-table", empty: t("models.noHistory") });

      const rollback = rollbackButton(data.rollback || {}, act);

      const reembed = data.reembed;
      const reembedStat = reembed ? stat(t("models.reembed"),
        t(`models.reembedStates.${reembed.state}`) || reembed.state,
        [t("models.reembedProgress", { done: reembed.chunks_done, total: reembed.chunks_total }),
          reembed.state === "building" ? [" ", actionButton(t("common.cancel"), () => act(t("models.cancelled"), () => api.delete("/api/models/reembed")), { kind: "ghost", id: "cancel-reembed" })] : null]) : null;

      clear(panel,
        pageHead(t("admin.models"), t("models.subtitle"), refreshButton(load), rollback),
        h("div", { class: "stats" },
          stat(t("models.active"), data.active || t("models.configured")),
          stat(t("models.servingNow"), data.serving || "–"),
          stat(t("models.probation"), probation ? probation.version : t("models.noProbation"),
            probation ? t("models.probationUntil", { until: formatDate(probation.until) }) : ""),
          stat(t("models.pending"), String((data.schedules || []).length)),
          reembedStat),
        card(t("models.versions"), versions),
        card(t("models.schedules"), schedules),
        card(t("models.history"), events));
      // An activation this tab followed has ended: say how.
      if (following && following !== data.activating) {
        const ended = data.versions.find((v) => `${v.name}/${v.version}` === following);
        const activation = ended?.activation || {};
        if (activation.ok) toast(t("models.activated", { version: following }));
        else if (activation.ok === false) toast(t("models.activationFailed", { reason: activation.reason || "" }), { error: true });
      }
      following = data.activating || null;
      // Validations, activations and re-embeddings run in the background: follow them until they finish.
      const busy = (data.validating || []).length || data.activating || reembed?.state === "building";
      if (busy && !stopped) timer = setTimeout(load, POLL_MS);
    };
    await load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  },
};

function kindLabel(v) {
  if (v.kind === "upstream") return t("models.upstream");
  const when = formatDate(v.created_at);
  if (v.kind === "bundled") return t("models.kindBundled", { when });
  if (v.kind === "configured") return t("models.kindConfigured", { when });
  return t("models.importedAt", { when });
}

// The rollback names its target before anything happens; with none, it is disabled and its
// tooltip says why.
function rollbackButton(plan, act) {
  if (!plan.target) {
    const reason = plan.reason || t("models.noRollbackTarget");
    const button = actionButton(t("models.rollback"), async () => {}, { iconName: "undo", kind: "danger", id: "rollback", small: false, title: reason });
    button.disabled = true;
    button.setAttribute("aria-describedby", "rollback-why");
    // A disabled button gets no pointer events in some browsers: the wrapper carries the tooltip.
    return h("span", { class: "disabled-action", title: reason, id: "rollback-wrap" }, button,
      h("span", { class: "visually-hidden", id: "rollback-why" }, reason));
  }
  return actionButton(t("models.rollbackTo", { version: plan.target }), async () => {
    const ok = await confirmDialog({
      title: t("models.rollbackTitle", { version: plan.target }),
      body: t("models.rollbackBody", { version: plan.target, from: plan.from || "–" }),
      confirm: t("models.rollbackTo", { version: plan.target }), danger: true,
    });
    if (ok) await act(t("models.rollbackStarted", { version: plan.target }), () => api.post("/api/models/rollback", { to: plan.target, reason: "admin console" }));
  }, { iconName: "undo", kind: "danger", id: "rollback", small: false, title: t("models.rollbackTo", { version: plan.target }) });
}

function stat(label, value, sub = "") {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value text" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}
