// Documents: upload (per-file progress and result, OCR warnings), watched folders, the list with
// access groups, delete, a search box that shows what retrieval finds, and the progress of a
// re-chunking after a chunker change (followed until it ends).

import { api, headers, toLogin } from "../api.js";
import { confirmDialog } from "../dialog.js";
import { clear, formatBytes, formatDate, formatNumber, h, icon, toast } from "../dom.js";
import { t } from "../i18n.js";
import { actionButton, badge, card, chips, errorCard, pageHead, refreshButton, splitGroups, table } from "./common.js";
import { followSources, ocrNote } from "./sources.js";

const STATUS_KIND = { added: "added", updated: "updated", unchanged: "neutral", failed: "failed" };
const ACCEPT = ".md,.markdown,.txt,.html,.htm,.pdf,.docx,.xlsx,.csv,.png,.jpg,.jpeg,.tif,.tiff";

// The format column: scanned documents also say how OCR read them.
function formatCell(doc) {
  const parts = [badge(doc.format.toUpperCase())];
  const read = (doc.ocr || []).filter((p) => p.confidence !== null);
  if (read.length) {
    const lowest = Math.min(...read.map((p) => p.confidence));
    parts.push(h("span", { class: "sub", "data-ocr": formatNumber(lowest) }, t("documents.ocrRead", { pages: read.length, confidence: formatNumber(lowest) })));
  }
  if ((doc.ocr || []).some((p) => p.error)) parts.push(badge(t("documents.needsOcr"), "warning"));
  return parts;
}

// What OCR did with an uploaded file: the pages it read and their lowest confidence.
function ocrSummary(result) {
  const read = (result.ocr || []).filter((p) => p.confidence !== null);
  if (!read.length) return null;
  const lowest = Math.min(...read.map((p) => p.confidence));
  return t("documents.ocrRead", { pages: read.length, confidence: formatNumber(lowest) });
}

const POLL_MS = 2000; // while the knowledge base is being re-chunked

// XHR rather than fetch: only XHR reports upload progress.
function uploadOne(file, groups, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (groups.length) form.append("groups", groups.join(","));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/documents");
    for (const [name, value] of Object.entries(headers("POST"))) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.upload.addEventListener("load", () => onProgress(1));
    xhr.addEventListener("load", () => {
      if (xhr.status === 401) {
        toLogin();
        return;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new Error(xhr.response?.error?.message || t("error.status", { status: xhr.status })));
    });
    xhr.addEventListener("error", () => reject(new Error(t("error.network"))));
    xhr.send(form);
  });
}

export default {
  id: "documents",
  icon: "documents",
  title: "admin.documents",

  async render(panel) {
    const listArea = h("div", { id: "document-list" }, h("p", { class: "loading" }, t("common.loading")));
    const subtitle = h("p", {});
    const rechunkArea = h("div", { id: "rechunk" });
    let documents = [];
    let filter = "";
    let timer = null;
    let stopped = false;
    let following = false; // a re-chunking this tab saw running

    const showRechunk = (job) => {
      if (!job || job.state === "done") {
        if (job && following) {
          toast(t("documents.rechunk.done", { total: formatNumber(job.documents_total, 0),
            before: formatNumber(job.chunks_before, 0), after: formatNumber(job.chunks_after, 0) }));
        }
        following = false;
        clear(rechunkArea);
        return;
      }
      following = job.state === "running";
      clear(rechunkArea, h("div", { class: "card rechunk", "data-state": job.state },
        h("div", { class: "card-head" }, h("h2", {}, t(`documents.rechunk.${job.state}`)),
          h("span", { class: "spacer" }), badge(job.chunker)),
        h("p", { class: "sub" }, t("documents.rechunk.progress", {
          done: formatNumber(job.documents_done, 0), total: formatNumber(job.documents_total, 0) })),
        job.state === "running"
          ? h("progress", { class: "inline-progress", max: job.documents_total, value: job.documents_done })
          : null,
        job.error ? h("p", { class: "form-error" }, job.error) : null));
    };

    const renderList = () => {
      const shown = documents.filter((d) => !filter || `${d.source} ${d.title} ${d.groups.join(" ")}`.toLowerCase().includes(filter));
      clear(listArea, table([
        { label: t("documents.name"), cell: (d) => [h("strong", {}, d.title || d.source), h("span", { class: "sub" }, d.source)] },
        { label: t("documents.groups"), cell: (d) => chips(d.groups) },
        { label: t("documents.format"), cell: formatCell },
        { label: t("documents.chunks"), cell: (d) => String(d.chunk_count), class: "num" },
        { label: t("documents.size"), cell: (d) => formatBytes(d.size), class: "num" },
        { label: t("documents.ingested"), cell: (d) => formatDate(d.ingested_at), class: "date" },
        { label: "", class: "actions", cell: (d) => actionButton(t("common.delete"), () => remove(d), { iconName: "trash", kind: "ghost" }) },
      ], shown, { id: "documents-table", rowId: (d) => d.source, empty: filter ? t("documents.noMatch") : t("documents.empty") }));
    };

    const load = async () => {
      try {
        const body = await api.get("/api/documents");
        documents = body.documents;
        subtitle.textContent = t("documents.summary", {
          count: documents.length, chunks: documents.reduce((n, d) => n + d.chunk_count, 0),
        });
        renderList();
        showRechunk(body.rechunk);
        clearTimeout(timer);
        if (body.rechunk?.state === "running" && !stopped) timer = setTimeout(load, POLL_MS);
      } catch (error) {
        clear(listArea, h("p", { class: "form-error" }, error.message));
      }
    };

    const remove = async (doc) => {
      const ok = await confirmDialog({
        title: t("documents.deleteTitle"), body: t("documents.deleteBody", { name: doc.source }),
        confirm: t("common.delete"), danger: true,
      });
      if (!ok) return;
      await api.delete(`/api/documents/${doc.id}`);
      toast(t("documents.deleted", { name: doc.source }));
      await load();
    };

    // -- upload --
    const fileInput = h("input", { type: "file", id: "upload-files", multiple: true, class: "visually-hidden",
      accept: ACCEPT });
    const groupsInput = h("input", { id: "upload-groups", placeholder: t("documents.groupsPlaceholder"), autocomplete: "off" });
    const uploads = h("ul", { class: "uploads", id: "uploads" });
    const dropzone = h("div", { class: "dropzone", id: "dropzone" },
      h("span", { class: "empty-icon" }, icon("upload")),
      h("span", { class: "big" }, t("documents.drop")),
      h("span", {}, t("documents.formats")),
      h("label", { for: "upload-files", class: "button primary small" }, t("documents.choose")),
      fileInput);

    const upload = async (files) => {
      const groups = splitGroups(groupsInput.value);
      for (const file of files) {
        const progress = h("progress", { max: 1, value: 0 });
        const status = badge(t("documents.uploading"), "accent");
        const detail = h("span", { class: "detail" }, formatBytes(file.size));
        const row = h("li", { class: "upload", "data-name": file.name }, h("strong", {}, file.name), status, progress, detail);
        uploads.prepend(row);
        try {
          const body = await uploadOne(file, groups, (fraction) => {
            progress.value = fraction;
            if (fraction >= 1) {
              progress.removeAttribute("value"); // indeterminate while the server indexes it
              clear(status, t("documents.indexing"));
            }
          });
          progress.remove();
          for (const result of body.results) {
            status.className = `badge ${STATUS_KIND[result.status] || "neutral"}`;
            status.dataset.status = result.status;
            clear(status, t(`documents.status.${result.status}`));
            if (result.status === "failed") {
              row.append(h("span", { class: "reason" }, result.reason));
              detail.remove();
            } else {
              clear(detail, [t("documents.result", { chunks: result.chunks, groups: groups.join(", ") || t("documents.defaultGroups") }),
                ocrSummary(result)].filter(Boolean).join(" · "));
              // Ingested with a caveat: pages OCR read with low confidence, or could not read.
              if (result.warnings?.length) {
                row.append(h("ul", { class: "warnings" }, result.warnings.map((w) => h("li", {}, w))));
              }
            }
          }
        } catch (error) {
          progress.remove();
          status.className = "badge failed";
          status.dataset.status = "failed";
          clear(status, t("documents.status.failed"));
          row.append(h("span", { class: "reason" }, error.message));
        }
      }
      await load();
    };

    fileInput.addEventListener("change", () => {
      const files = [...fileInput.files];
      fileInput.value = "";
      if (files.length) upload(files);
    });
    for (const name of ["dragenter", "dragover"]) {
      dropzone.addEventListener(name, (event) => {
        event.preventDefault();
        dropzone.classList.add("over");
      });
    }
    for (const name of ["dragleave", "drop"]) dropzone.addEventListener(name, () => dropzone.classList.remove("over"));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      const files = [...event.dataTransfer.files];
      if (files.length) upload(files);
    });

    // -- search --
    const query = h("input", { type: "search", id: "search-query", placeholder: t("documents.searchPlaceholder") });
    const results = h("div", { id: "search-results" });
    const searchForm = h("form", { class: "search-form", id: "search-form" }, query,
      h("button", { type: "submit", class: "button primary" }, icon("search"), t("documents.search")));
    searchForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!query.value.trim()) return;
      clear(results, h("p", { class: "loading" }, t("common.loading")));
      try {
        const body = await api.post("/api/search", { query: query.value.trim(), k: 8 });
        clear(results, body.results.length
          ? h("ol", { class: "results" }, body.results.map((r) => h("li", { class: "result", "data-document": r.document },
            h("div", { class: "head" }, h("strong", {}, r.title || r.document), h("span", { class: "spacer" }),
              badge(r.score.toFixed(3))),
            h("span", { class: "where" }, [r.document, r.heading].filter(Boolean).join(" · ")),
            h("p", { class: "snippet" }, r.snippet))))
          : h("p", { class: "muted" }, t("documents.noResults")));
      } catch (error) {
        clear(results, h("p", { class: "form-error" }, error.message));
      }
    });

    const filterInput = h("input", { type: "search", id: "document-filter", placeholder: t("documents.filter") });
    filterInput.addEventListener("input", () => {
      filter = filterInput.value.trim().toLowerCase();
      renderList();
    });

    const ocrArea = h("div", { id: "ocr-area" });
    const sourcesArea = h("div", { id: "sources-area" }, h("p", { class: "loading" }, t("common.loading")));
    clear(panel,
      pageHead(t("admin.documents"), subtitle, refreshButton(async () => {
        await Promise.all([load(), sources.reload()]);
      })),
      rechunkArea,
      h("div", { class: "grid-2" },
        card(t("documents.upload"), dropzone, ocrArea,
          h("div", { class: "upload-form" },
            h("label", { class: "field" }, h("span", {}, t("documents.groupsLabel")), groupsInput,
              h("span", { class: "hint" }, t("documents.groupsHint")))),
          uploads),
        card(t("documents.searchTitle"), h("p", { class: "muted" }, t("documents.searchHint")), searchForm, results)),
      h("section", { class: "card", id: "sources" },
        h("h2", {}, t("sources.title")), h("p", { class: "muted" }, t("sources.hint")), sourcesArea),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, t("documents.list")), h("span", { class: "spacer" }), filterInput),
        listArea));
    const sources = followSources(sourcesArea, {
      onOcr: (ocr) => clear(ocrArea, ocrNote(ocr)),
      onRunEnd: () => load(),
    });
    await load().catch((error) => clear(panel, errorCard(error)));
    return () => {
      stopped = true;
      clearTimeout(timer);
      sources.stop();
    };
  },
};
