// Answer text to DOM: paragraphs, lists, **bold**, `code` and fenced code, and the [n] citations
// as buttons that open source n. Only this small subset: answers are short, and everything is
// built as text nodes, so a model that writes HTML shows it as text.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\[\d{1,2}(?:\s*,\s*\d{1,2})*\])/g;

function inline(text, cite) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("**")) out.push(h("strong", {}, token.slice(2, -2)));
    else if (token.startsWith("`")) out.push(h("code", {}, token.slice(1, -1)));
    else out.push(...citations(token, cite));
    last = match.index + token.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function citations(token, cite) {
  const numbers = token.slice(1, -1).split(",").map((n) => Number(n.trim()));
  const known = numbers.every((n) => cite.has(n));
  if (!known) return [token]; // "[3]" with no third source is just text
  return numbers.map((n) => h("button", {
    type: "button", class: "cite", "data-cite": n, title: cite.title(n),
    "aria-label": t("chat.openSource", { n }), onclick: () => cite.open(n),
  }, String(n)));
}

// `cite` = { has(n), title(n), open(n) }.
export function renderAnswer(text, cite) {
  const nodes = [];
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let paragraph = [];
  let list = null;
  let code = null;
  const flushParagraph = () => {
    if (paragraph.length) {
      nodes.push(h("p", {}, paragraph.flatMap((line, i) => [i ? h("br") : null, ...inline(line, cite)])));
      paragraph = [];
    }
  };
  const flushList = () => {
    if (list) nodes.push(list);
    list = null;
  };
  for (const line of lines) {
    if (code !== null) {
      if (line.trim().startsWith("```")) {
        nodes.push(h("pre", {}, h("code", {}, code.join("\n"))));
        code = null;
      } else {
        code.push(line);
      }
      continue;
    }
    if (line.trim().startsWith("```")) {
      flushParagraph();
      flushList();
      code = [];
      continue;
    }
    const bullet = line.match(/^\s*[-*•]\s+(.*)$/);
    const numbered = line.match(/^\s*(\d{1,3})[.)]\s+(.*)$/);
    if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        flushList();
        list = h(tag, numbered && numbered[1] !== "1" ? { start: numbered[1] } : {});
      }
      list.append(h("li", {}, inline(bullet ? bullet[1] : numbered[2], cite)));
      continue;
    }
    if (!line.trim()) {
      flushParagraph();
      flushList();
      continue;
    }
    flushList();
    const heading = line.match(/^#{1,4}\s+(.*)$/);
    if (heading) {
      flushParagraph();
      nodes.push(h("p", {}, h("strong", {}, inline(heading[1], cite))));
      continue;
    }
    paragraph.push(line);
  }
  if (code !== null) nodes.push(h("pre", {}, h("code", {}, code.join("\n"))));
  flushParagraph();
  flushList();
  return nodes;
}
