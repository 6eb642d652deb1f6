// Answer text to DOM: paragraphs, lead lines ("Document › Section:"), lists, tables, **bold**,
// `code` and fenced code, and the [n] citations as buttons that open source n. Only this small
// subset: answers are short, and everything is built as text nodes, so a model that writes HTML
// shows it as text.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\[\d{1,2}(?:\s*,\s*\d{1,2})*\])/g;
const BULLET = /^\s*[-*•]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,3})[.)]\s+(.*)$/;
const TABLE_ROW = /^\s*\|.*\|\s*$/;
const TABLE_RULE = /^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$/;

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

// A table row's cells: split on the pipes not escaped as \|; the outer pipes frame the row.
function cellsOf(line) {
  const inner = line.trim().replace(/^\|/, "").replace(/(?<!\\)\|$/, "");
  return inner.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function table(lines, cite) {
  const rows = lines.filter((line) => !TABLE_RULE.test(line)).map(cellsOf);
  const header = lines.length > 1 && TABLE_RULE.test(lines[1]) ? rows.shift() : null;
  const width = Math.max(header ? header.length : 0, ...rows.map((row) => row.length));
  const padded = (cells) => [...cells, ...Array(width - cells.length).fill("")];
  return h("div", { class: "answer-table" }, h("table", {},
    header ? h("thead", {}, h("tr", {}, padded(header).map((cell) => h("th", { scope: "col" }, inline(cell, cite))))) : null,
    h("tbody", {}, rows.map((row) => h("tr", {}, padded(row).map((cell) => h("td", {}, inline(cell, cite))))))));
}

// A line that introduces what follows it in its block ("Purchase Order Approval › 3. Approval
// limits:"): the first line of a block, ending in a colon, with more lines under it. A numbered
// one is a section heading, unless the next line goes on numbering (then it is step 1 of a list).
function isLead(lines, i) {
  const line = lines[i].trim();
  const next = lines[i + 1]?.trim();
  if (!line.endsWith(":") || !next || BULLET.test(line)) return false;
  // "3. Applying:" before "1. Open HR100" is a section's name; before "4. ..." it is a step.
  const here = line.match(NUMBERED);
  const after = next.match(NUMBERED);
  return !(here && after && Number(after[1]) === Number(here[1]) + 1);
}

// `cite` = { has(n), title(n), open(n) }.
export function renderAnswer(text, cite) {
  const nodes = [];
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let paragraph = [];
  let list = null;
  let code = null;
  let rows = null; // lines of the table being read
  let blockStart = true; // at the start of the text or after a blank line
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
  const flushTable = () => {
    if (rows) nodes.push(table(rows, cite));
    rows = null;
  };
  for (const [i, line] of lines.entries()) {
    if (code !== null) {
      if (line.trim().startsWith("```")) {
        nodes.push(h("pre", {}, h("code", {}, code.join("\n"))));
        code = null;
      } else {
        code.push(line);
      }
      continue;
    }
    // A row goes on the table; while it streams in, the last row may still lack its closing pipe.
    if (rows && line.trim().startsWith("|")) {
      rows.push(line);
      continue;
    }
    flushTable();
    const start = blockStart;
    blockStart = !line.trim();
    if (line.trim().startsWith("```")) {
      flushParagraph();
      flushList();
      code = [];
      continue;
    }
    if (TABLE_ROW.test(line)) {
      flushParagraph();
      flushList();
      rows = [line];
      continue;
    }
    if (start && isLead(lines, i)) {
      flushParagraph();
      flushList();
      nodes.push(h("p", { class: "lead" }, inline(line.trim(), cite)));
      continue;
    }
    const bullet = line.match(BULLET);
    const numbered = line.match(NUMBERED);
    if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        flushList();
        list = h(tag, numbered && numbered[1] !== "1" ? { start: numbered[1] } : {});
      }
      // A step keeps its own number (quoted steps may start anywhere or skip).
      list.append(h("li", numbered ? { value: numbered[1] } : {}, inline(bullet ? bullet[1] : numbered[2], cite)));
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
  flushTable();
  flushParagraph();
  flushList();
  return nodes;
}
