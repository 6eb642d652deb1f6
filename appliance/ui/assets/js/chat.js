// The employee chat: streamed, cited answers marked with how they were made; the passage behind
// each source with the quoted spans highlighted; feedback; and the user's conversation history.

import { ApiError, api, errorFrom, headers, loadMe, toLogin } from "./api.js";
import { renderAnswer } from "./answer.js";
import { exportDialog } from "./conversation-export.js";
import { confirmDialog, promptDialog } from "./dialog.js";
import { clear, fillIcons, formatRelative, h, icon, toast } from "./dom.js";
import { startPage, t } from "./i18n.js";
import { renderShell } from "./shell.js";
import { sseData } from "./sse.js";

// Earlier turns sent along with a question, so follow-ups make sense; few, because the model's
// context also has to hold the retrieved sources.
const HISTORY_MESSAGES = 4;
const HISTORY_CHARS = 800;
const TITLE_CHARS = 60;

const $ = (id) => document.getElementById(id);
const state = {
  me: null,
  model: null,
  conversations: [],
  current: null, // {id, title, messages: [{role, content, sources, response_id, rating, answer_mode, ...}]}
  modelReady: null, // resolves once the model answers /v1/models
  streaming: null, // AbortController of the answer in progress
};

// -- model readiness ------------------------------------------------------------------------------

async function loadModel() {
  const notice = $("model-notice");
  for (;;) {
    try {
      const models = await api.get("/v1/models");
      state.model = models.data[0].id;
      document.body.dataset.model = state.model;
      notice.hidden = true;
      return;
    } catch (error) {
      if (error.status === 401) return;
      notice.hidden = false;
      notice.className = error.status === 503 ? "notice" : "notice error";
      clear(notice, icon(error.status === 503 ? "clock" : "alert"),
        error.status === 503 ? t("chat.modelLoading") : error.message);
      await new Promise((resolve) => setTimeout(resolve, 5000));
    }
  }
}

// -- conversation list ----------------------------------------------------------------------------

async function loadConversations() {
  try {
    const body = await api.get("/api/conversations");
    state.conversations = body.conversations || [];
  } catch (error) {
    toast(error.message, { error: true });
  }
  renderConversationList();
}

function renderConversationList() {
  const list = $("conversation-list");
  if (!state.conversations.length) {
    clear(list, h("p", { class: "list-empty" }, t("chat.noHistory")));
    return;
  }
  clear(list, state.conversations.map((conversation) => {
    const item = h("div", {
      class: "conversation", "data-id": conversation.id,
      "aria-current": String(state.current?.id === conversation.id),
    });
    const open = h("button", { type: "button", class: "open", onclick: () => openConversation(conversation.id) },
      h("span", { class: "title" }, conversation.title),
      h("span", { class: "when" }, formatRelative(conversation.updated_at)));
    const download = h("button", {
      type: "button", class: "icon-button small export", title: t("chat.export"), "aria-label": t("chat.export"),
      onclick: () => exportDialog(conversation),
    }, icon("download"));
    const rename = h("button", {
      type: "button", class: "icon-button small rename", title: t("chat.rename"), "aria-label": t("chat.rename"),
      onclick: () => renameConversation(conversation),
    }, icon("edit"));
    const remove = h("button", {
      type: "button", class: "icon-button small delete", title: t("chat.delete"), "aria-label": t("chat.delete"),
      onclick: () => deleteConversation(conversation),
    }, icon("trash"));
    item.append(open, h("span", { class: "actions" }, download, rename, remove));
    return item;
  }));
}

async function renameConversation(conversation) {
  const title = await promptDialog({ title: t("chat.rename"), label: t("chat.title"), value: conversation.title });
  if (!title) return;
  try {
    const updated = await api.patch(`/api/conversations/${conversation.id}`, { title });
    conversation.title = updated.title;
    if (state.current?.id === conversation.id) state.current.title = updated.title;
    renderConversationList();
  } catch (error) {
    toast(error.message, { error: true });
  }
}

async function deleteConversation(conversation) {
  const ok = await confirmDialog({
    title: t("chat.deleteTitle"), body: t("chat.deleteBody", { title: conversation.title }),
    confirm: t("chat.delete"), danger: true,
  });
  if (!ok) return;
  try {
    await api.delete(`/api/conversations/${conversation.id}`);
    state.conversations = state.conversations.filter((c) => c.id !== conversation.id);
    if (state.current?.id === conversation.id) newConversation();
    renderConversationList();
  } catch (error) {
    toast(error.message, { error: true });
  }
}

async function openConversation(id, { updateHash = true } = {}) {
  stopStreaming();
  closeSidebar();
  try {
    const conversation = await api.get(`/api/conversations/${encodeURIComponent(id)}`);
    state.current = conversation;
    if (updateHash) history.replaceState(null, "", `#c=${conversation.id}`);
    const messages = $("messages");
    clear(messages);
    for (const message of conversation.messages) {
      if (message.role === "user") messages.append(userMessage(message.content));
      else messages.append(new AnswerView(message).el);
    }
    messages.scrollTop = messages.scrollHeight;
    if (state.conversations.some((c) => c.id === conversation.id)) renderConversationList();
    else await loadConversations(); // started elsewhere (another tab, or the API) since the list loaded
    $("question").focus();
  } catch (error) {
    if (error.status === 404) {
      toast(t("chat.missing"), { error: true });
      newConversation();
    } else {
      toast(error.message, { error: true });
    }
  }
}

// A link or bookmark to #c=<id> opens that conversation.
async function openFromHash() {
  const match = location.hash.match(/^#c=([\w-]+)$/);
  if (match && match[1] !== state.current?.id) await openConversation(match[1], { updateHash: false });
}

function newConversation() {
  stopStreaming();
  state.current = null;
  history.replaceState(null, "", location.pathname);
  clear($("messages"), $("welcome") || welcome());
  renderExamples();
  renderConversationList();
  closeSidebar();
  $("question").focus();
}

function welcome() {
  const section = h("section", { class: "welcome", id: "welcome" },
    h("img", { src: document.querySelector("link[rel=icon]").href, alt: "", width: 56, height: 56 }),
    h("h1", { "data-i18n": "chat.welcome.title" }, t("chat.welcome.title")),
    h("p", { "data-i18n": "chat.welcome.body" }, t("chat.welcome.body")),
    h("div", { class: "examples", id: "examples" }));
  return section;
}

function renderExamples() {
  const examples = $("examples");
  if (!examples) return;
  const questions = t("chat.examples").split("|");
  const topics = t("chat.exampleTopics").split("|");
  clear(examples, questions.map((question, i) => h("button", {
    type: "button", class: "example", onclick: () => ask(question),
  }, h("small", {}, topics[i] || ""), question)));
}

// -- messages -------------------------------------------------------------------------------------

function userMessage(text) {
  return h("div", { class: "message user" }, h("div", { class: "bubble" }, text));
}

// What a chat response says about its answer (extension fields), as it is saved with the answer.
const ANSWER_FIELDS = ["answer_mode", "support", "removed", "retrieval_query"];

// One assistant answer: how it was made, its text (streamed in), its sources, what was searched
// for it, and its feedback buttons.
class AnswerView {
  constructor({ content = "", sources = [], response_id = null, rating = null, ...about } = {}) {
    this.text = content;
    this.sources = sources || [];
    this.responseId = response_id;
    this.rating = rating;
    this.about = {}; // answer_mode, support, removed, retrieval_query
    this.learn(about);
    this.outcome = "done"; // or stopped, interrupted, not-found, error: for styling and tests
    this.streaming = false;
    this.quoted = h("p", { class: "answer-mode", hidden: true });
    this.answer = h("div", { class: "answer" });
    this.sourcesEl = h("div", { class: "sources" });
    this.meta = h("div", { class: "answer-meta" });
    this.el = h("div", { class: "message assistant" },
      h("img", { class: "mark", src: document.querySelector("link[rel=icon]").href, alt: "" }),
      h("div", { class: "body" }, this.quoted, this.answer, this.sourcesEl, this.meta));
    this.cite = {
      has: (n) => n >= 1 && n <= this.sources.length,
      title: (n) => this.sources[n - 1]?.title || this.sources[n - 1]?.document || "",
      open: (n) => openPassage(this.sources[n - 1], n),
    };
    this.el.view = this; // found again when the language changes
    this.render();
  }

  // Take the extension fields a response chunk (or a saved message) carries.
  learn(fields) {
    for (const name of ANSWER_FIELDS) {
      if (fields[name] !== undefined && fields[name] !== null) this.about[name] = fields[name];
    }
  }

  render() {
    this.el.dataset.state = this.streaming ? "streaming" : this.outcome;
    if (this.responseId) this.el.dataset.responseId = this.responseId;
    if (this.about.answer_mode) this.el.dataset.answerMode = this.about.answer_mode;
    this.renderQuoted();
    const content = renderAnswer(this.text, this.cite);
    if (this.streaming) {
      if (!this.text) content.push(h("span", { class: "thinking", "aria-label": t("chat.thinking") }, h("i"), h("i"), h("i")));
      else (content.at(-1) || this.answer).append(h("span", { class: "caret" }));
    }
    clear(this.answer, content);
    this.renderSources();
    this.renderMeta();
  }

  // An answer quoted from the documents says so above it; it is known from the first chunk.
  renderQuoted() {
    const quoted = this.about.answer_mode === "extractive";
    this.quoted.hidden = !quoted;
    if (quoted) {
      this.quoted.title = t("chat.mode.extractiveHint");
      clear(this.quoted, icon("quote"), t("chat.mode.extractive"));
    }
  }

  renderSources() {
    // A follow-up question was completed from the conversation: say what was searched.
    const query = this.about.retrieval_query;
    const searched = query && h("p", { class: "searched-for" }, icon("search"),
      h("span", {}, t("chat.searchedFor"), " ", h("q", {}, shownQuery(query))));
    if (!this.sources.length) {
      clear(this.sourcesEl, searched);
      return;
    }
    clear(this.sourcesEl,
      h("h3", {}, t("chat.sources")),
      h("ol", { class: "source-list" }, this.sources.map((source, i) => h("li", {},
        h("button", { type: "button", class: "source", "data-chunk": source.chunk_id, onclick: () => openPassage(source, i + 1) },
          h("span", { class: "n" }, String(i + 1)),
          h("span", { class: "text" },
            h("strong", {}, source.title || source.document),
            h("span", { class: "where" }, where(source)),
            h("span", { class: "snippet" }, source.snippet || "")))))),
      searched);
  }

  // A generated answer says, discreetly, that it was checked against the sources (known once it ended).
  verifiedNote() {
    const mode = this.about.answer_mode;
    if (mode !== "generated" && mode !== "generated_with_removals") return null;
    const removed = mode === "generated_with_removals";
    return h("span", {
      class: removed ? "verified removals" : "verified", "data-mode": mode,
      title: removed ? t("chat.mode.removalsHint", { n: this.about.removed ?? "?" }) : t("chat.mode.generatedHint"),
    }, icon("check"), removed ? t("chat.mode.removals") : t("chat.mode.generated"));
  }

  renderMeta() {
    if (this.streaming) {
      clear(this.meta);
      return;
    }
    const note = { interrupted: "chat.interrupted", stopped: "chat.stopped", "not-found": "chat.notFound" }[this.outcome];
    const parts = [this.verifiedNote(), h("span", { class: "status" }, note ? t(note) : "")];
    if (this.responseId) {
      for (const [rating, name] of [["up", "up"], ["down", "down"]]) {
        parts.push(h("button", {
          type: "button", class: `icon-button small feedback ${rating}`, "data-rating": rating,
          "aria-pressed": String(this.rating === rating), title: t(`chat.feedback.${rating}`),
          "aria-label": t(`chat.feedback.${rating}`), onclick: () => this.rate(rating),
        }, icon(name)));
      }
    }
    if (this.text) {
      parts.push(h("button", {
        type: "button", class: "icon-button small copy", title: t("common.copy"), "aria-label": t("common.copy"),
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(this.text);
            toast(t("common.copied"));
          } catch {
            toast(t("chat.copyFailed"), { error: true });
          }
        },
      }, icon("copy")));
    }
    clear(this.meta, parts);
  }

  async rate(rating) {
    if (this.rating === rating) return;
    const previous = this.rating;
    this.rating = rating;
    this.renderMeta();
    try {
      await api.post("/api/feedback", { response_id: this.responseId, rating });
      const stored = state.current?.messages.find((m) => m.response_id === this.responseId);
      if (stored) stored.rating = rating;
      toast(t("chat.feedback.thanks"));
    } catch (error) {
      this.rating = previous;
      this.renderMeta();
      toast(error.message, { error: true });
    }
  }

  fail(message, retry) {
    this.streaming = false;
    this.el.dataset.state = "error";
    this.answer.className = "answer error";
    clear(this.answer, h("p", {}, message));
    if (retry) this.answer.append(h("button", { type: "button", class: "button small", onclick: retry }, icon("refresh"), t("chat.retry")));
    clear(this.meta);
  }
}

// The server repeats the last question in a follow-up's query to weigh it most; show it once.
function shownQuery(query) {
  const words = query.trim().split(/\s+/);
  for (let n = Math.floor(words.length / 2); n > 0; n--) {
    if (words.slice(-n).join(" ") === words.slice(-2 * n, -n).join(" ")) return words.slice(0, -n).join(" ");
  }
  return words.join(" ");
}

function where(source) {
  const parts = [];
  if (source.heading) parts.push(source.heading);
  if (source.page) parts.push(t("passage.page", { page: source.page }));
  if (source.sheet) parts.push(t("passage.sheet", { sheet: source.sheet }));
  if (!parts.length || source.title) parts.push(source.document);
  return parts.join(" · ");
}

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 120;
}

// -- asking ---------------------------------------------------------------------------------------

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
}

function stopStreaming() {
  if (state.streaming) state.streaming.abort();
}

function historyForModel() {
  const messages = state.current?.messages || [];
  return messages.slice(-HISTORY_MESSAGES).map((m) => ({ role: m.role, content: m.content.slice(0, HISTORY_CHARS) }));
}

async function ask(question) {
  question = question.trim();
  if (!question || state.streaming) return;
  const input = $("question");
  input.value = "";
  autosize();
  const messages = $("messages");
  $("welcome")?.remove();
  messages.append(userMessage(question));
  const view = new AnswerView();
  view.streaming = true;
  view.render();
  messages.append(view.el);
  messages.scrollTop = messages.scrollHeight;

  const controller = new AbortController();
  state.streaming = controller;
  setBusy(true);
  let stopped = false;
  let failed = null;
  const history = historyForModel();
  try {
    if (!state.model) await state.modelReady; // the question waits, showing progress, until the model is up
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      credentials: "same-origin",
      headers: headers("POST", { "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ model: state.model, stream: true, messages: [...history, { role: "user", content: question }] }),
      signal: controller.signal,
    });
    if (response.status === 401) {
      toLogin();
      return;
    }
    if (!response.ok) throw await errorFrom(response);
    let frame = 0;
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error.message);
      if (chunk.id) view.responseId = chunk.id;
      if (Array.isArray(chunk.sources)) view.sources = chunk.sources;
      view.learn(chunk); // how the answer is made: on the first chunk if quoted, else on the last
      if (chunk.grounded === false && !chunk.sources?.length) view.notFound = true;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) view.text += delta;
      if (!frame) {
        frame = requestAnimationFrame(() => {
          frame = 0;
          const follow = nearBottom(messages);
          view.render();
          if (follow) messages.scrollTop = messages.scrollHeight;
        });
      }
    }
    cancelAnimationFrame(frame);
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else failed = error instanceof ApiError ? error.message : t("error.network");
  } finally {
    state.streaming = null;
    setBusy(false);
  }
  if (failed && !view.text) {
    view.fail(failed, () => {
      view.el.previousElementSibling?.remove();
      view.el.remove();
      ask(question);
    });
    return;
  }
  view.streaming = false;
  if (view.notFound) view.answer.classList.add("not-found");
  view.outcome = failed ? "interrupted" : stopped ? "stopped" : view.notFound ? "not-found" : "done";
  view.render();
  if (nearBottom(messages)) messages.scrollTop = messages.scrollHeight;
  if (view.text) await remember(question, view);
}

// Store the exchange in the user's history (creating the conversation on its first question).
async function remember(question, view) {
  try {
    if (!state.current) {
      const created = await api.post("/api/conversations", { title: question.slice(0, TITLE_CHARS) });
      state.current = { ...created, messages: [] };
      history.replaceState(null, "", `#c=${created.id}`);
    }
    const exchange = [
      { role: "user", content: question },
      { role: "assistant", content: view.text, sources: view.sources, response_id: view.responseId, ...view.about },
    ];
    await api.post(`/api/conversations/${state.current.id}/messages`, { messages: exchange });
    state.current.messages.push(...exchange.map((m) => ({ ...m, rating: null })));
    await loadConversations();
  } catch (error) {
    toast(t("chat.notSaved", { message: error.message }), { error: true });
  }
}

// -- passage drawer -------------------------------------------------------------------------------

async function openPassage(source, n) {
  const dialog = $("passage");
  $("passage-title").textContent = source.title || source.document;
  $("passage-where").textContent = `[${n}] ${where(source)}`;
  const body = $("passage-body");
  clear(body, h("p", { class: "loading" }, t("common.loading")));
  if (!dialog.open) dialog.showModal();
  try {
    const passage = await api.get(`/api/chunks/${encodeURIComponent(source.chunk_id)}`);
    $("passage-title").textContent = passage.title || passage.document;
    // The cited passage between its neighbours, which give it context.
    const around = (part, side) => part && h("div", { class: `passage-context ${side}` },
      part.heading && part.heading !== passage.heading ? h("p", { class: "eyebrow muted" }, part.heading) : null,
      h("div", { class: "passage-text" }, part.text));
    clear(body,
      h("p", { class: "muted" }, h("span", { class: "badge neutral" }, passage.document)),
      around(passage.previous, "before"),
      h("div", { class: "passage-cited" },
        passage.heading ? h("p", { class: "eyebrow" }, passage.heading) : null,
        h("div", { class: "passage-text", id: "passage-text" }, highlighted(passage.text, source.spans))),
      around(passage.next, "after"));
    body.querySelector("#passage-text mark")?.scrollIntoView({ block: "center" });
  } catch (error) {
    clear(body, h("p", { class: "form-error" }, error.status === 404 ? t("passage.gone") : error.message));
  }
}

// The passage text with the spans the answer quoted in <mark>. Spans are [start, end) offsets the
// server counts in code points, so the text is indexed by code point, not by UTF-16 unit.
function highlighted(text, spans) {
  const chars = Array.from(text);
  const ranges = (Array.isArray(spans) ? spans : [])
    .filter((span) => Array.isArray(span) && Number.isInteger(span[0]) && Number.isInteger(span[1]))
    .map(([start, end]) => [Math.max(0, start), Math.min(chars.length, end)])
    .sort((a, b) => a[0] - b[0]);
  const parts = [];
  let at = 0;
  for (const [start, end] of ranges) {
    const from = Math.max(start, at); // overlapping spans are marked once
    if (from >= end) continue;
    if (from > at) parts.push(chars.slice(at, from).join(""));
    parts.push(h("mark", {}, chars.slice(from, end).join("")));
    at = end;
  }
  if (at < chars.length) parts.push(chars.slice(at).join(""));
  return parts;
}

// -- layout ---------------------------------------------------------------------------------------

function autosize() {
  const input = $("question");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
}

function openSidebar() {
  $("sidebar").classList.add("open");
  $("scrim").hidden = false;
  $("sidebar-toggle").setAttribute("aria-expanded", "true");
}

function closeSidebar() {
  $("sidebar").classList.remove("open");
  $("scrim").hidden = true;
  $("sidebar-toggle").setAttribute("aria-expanded", "false");
}

function bind() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    ask($("question").value);
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask($("question").value);
    }
  });
  $("question").addEventListener("input", autosize);
  $("stop").addEventListener("click", stopStreaming);
  $("new-chat").addEventListener("click", newConversation);
  $("sidebar-toggle").addEventListener("click", () => ($("sidebar").classList.contains("open") ? closeSidebar() : openSidebar()));
  $("scrim").addEventListener("click", closeSidebar);
  $("passage-close").addEventListener("click", () => $("passage").close());
  $("passage").addEventListener("click", (event) => {
    if (event.target === $("passage")) $("passage").close(); // a click on the backdrop
  });
  document.addEventListener("languagechange", () => {
    for (const message of document.querySelectorAll(".message.assistant")) {
      if (message.view && !message.view.streaming && message.dataset.state !== "error") message.view.render();
    }
    renderExamples();
    renderConversationList();
    document.title = t("app.name");
  });
}

async function main() {
  fillIcons();
  startPage();
  document.title = t("app.name");
  bind();
  try {
    state.me = await loadMe();
  } catch (error) {
    if (error.status !== 401) toast(error.message, { error: true });
    return;
  }
  renderShell(state.me, { page: "chat" });
  renderExamples();
  state.modelReady = loadModel();
  await loadConversations();
  await openFromHash();
  window.addEventListener("hashchange", openFromHash);
  $("question").focus();
}

main();
