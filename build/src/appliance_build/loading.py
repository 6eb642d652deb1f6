"""Load stage: chat logs (JSONL), QA pairs (CSV/JSONL) and KB documents turned into instruction pairs.

Bad input never stops the build and never vanishes: each skipped line becomes a problem entry
with its file and line number.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance_build.documents import FORMATS, read_sections
from appliance_build.errors import BuildError

QUESTION_KEYS = ("question", "q", "prompt", "instruction")
ANSWER_KEYS = ("answer", "a", "response", "output")
MESSAGE_KEYS = ("messages", "conversation", "turns")


@dataclass
class Loaded:
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def problem(self, path: Path, line: int | None, reason: str) -> None:
        self.problems.append({"file": str(path), "line": line, "reason": reason})


def _record(kind: str, source: str, group: str, question: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "source": source, "group": group, "question": question,
            "answer": answer, "tags": [], **extra}


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in row and row[key] is not None:
            return row[key]
    return None


def _json_rows(path: Path, out: Loaded):
    """(line number, parsed value) of each line that is valid JSON; the others are reported."""
    for number, line in _lines(path, out):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            out.problem(path, number, f"not valid JSON ({exc.msg} at column {exc.colno})")


def load_chat_logs(path: Path, out: Loaded, rel: str) -> None:
    """One record per (user turn, next assistant turn); the conversation is the split group."""
    for number, row in _json_rows(path, out):
        messages = _pick(row, MESSAGE_KEYS) if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages:
            out.problem(path, number, f"no conversation: expected a non-empty list under one of {MESSAGE_KEYS}")
            continue
        conversation = str(row.get("id") or row.get("conversation_id") or f"{rel}:{number}")
        pairs = 0
        for i, message in enumerate(messages[:-1]):
            nxt = messages[i + 1]
            if not (isinstance(message, dict) and isinstance(nxt, dict)):
                continue
            if message.get("role") == "user" and nxt.get("role") == "assistant":
                # The turns before it: a follow-up is asked (and retrieved for) in its conversation.
                history = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages[:i]
                           if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
                out.records.append(_record("chat", rel, f"chat:{conversation}",
                                           str(message.get("content") or ""), str(nxt.get("content") or ""),
                                           line=number, history=history))
                pairs += 1
        if not pairs:
            out.problem(path, number, "conversation has no user turn followed by an assistant turn")


def load_qa_jsonl(path: Path, out: Loaded, rel: str) -> None:
    for number, row in _json_rows(path, out):
        if not isinstance(row, dict):
            out.problem(path, number, "expected a JSON object with question and answer")
            continue
        _qa_row(row, path, number, out, rel)


def load_qa_csv(path: Path, out: Loaded, rel: str) -> None:
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        out.problem(path, None, "file is empty")
        return
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if not any(k in columns for k in QUESTION_KEYS) or not any(k in columns for k in ANSWER_KEYS):
        out.problem(path, 1, f"wrong columns {reader.fieldnames}: need a question column "
                             f"({'/'.join(QUESTION_KEYS)}) and an answer column ({'/'.join(ANSWER_KEYS)})")
        return
    for row in reader:
        row = {(k or "").strip().lower(): v for k, v in row.items()}
        _qa_row(row, path, reader.line_num, out, rel)


def _qa_row(row: dict[str, Any], path: Path, number: int, out: Loaded, rel: str) -> None:
    question, answer = _pick(row, QUESTION_KEYS), _pick(row, ANSWER_KEYS)
    if question is None or answer is None:
        out.problem(path, number, "missing question or answer field")
        return
    # A QA pair drawn from a KB document splits with that document, so eval never sees its text.
    source = row.get("source") or row.get("doc")
    group = f"doc:{source}" if source else f"qa:{row.get('id') or f'{rel}:{number}'}"
    out.records.append(_record("qa", rel, group, str(question), str(answer), line=number))


def load_documents(folder: Path, out: Loaded, root: Path, max_chars: int) -> None:
    """Each document section becomes "explain <heading> in <title>" -> section text."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in FORMATS):
        rel = _rel(path, root)
        try:
            sections = read_sections(path)
        except Exception as exc:  # a broken document is reported, the rest of the corpus still loads
            out.problem(path, None, f"could not read document: {exc}")
            continue
        if not sections:
            out.problem(path, None, "document has no text")
            continue
        title = _title(path)
        for heading, section, where in sections:
            for part, body in enumerate(_chunks(section, max_chars), 1):
                korean = bool(re.search(r"[\uac00-\ud7a3]", heading + body[:200]))
                topic = heading or title
                if part > 1:
                    topic = f"{topic} ({part})"
                question = (f"{title} 문서에서 '{topic}' 내용을 설명해 주세요." if korean
                            else f"In the {title} document, what does '{topic}' say?")
                doc_path = path.relative_to(folder.parent).as_posix()
                out.records.append(_record("doc", rel, f"doc:{doc_path}", question, body,
                                           area=path.parent.name, heading=heading, where=where,
                                           doc_path=doc_path))


def _chunks(text: str, max_chars: int) -> list[str]:
    """Line-aligned pieces of at most `max_chars` (a longer single line is cut)."""
    chunks, current = [], ""
    for line in text.splitlines():
        while len(line) > max_chars:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:max_chars])
            line = line[max_chars:]
        if current and len(current) + 1 + len(line) > max_chars:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current.strip():
        chunks.append(current)
    return chunks


def _title(path: Path) -> str:
    return re.sub(r"[-_]+", " ", re.sub(r"-ko$", "", path.stem)).strip()


def _lines(path: Path, out: Loaded):
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        out.problem(path, None, "file is empty")
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def load_all(recipe) -> Loaded:
    data = recipe["data"]
    out = Loaded()
    for name in data["chat_logs"]:
        path = recipe.path(name)
        if not path.is_file():
            out.problem(path, None, "chat log file does not exist")
            continue
        load_chat_logs(path, out, _rel(path, recipe.root))
    for name in data["qa_pairs"]:
        path = recipe.path(name)
        if not path.is_file():
            out.problem(path, None, "QA file does not exist")
        elif path.suffix.lower() == ".csv":
            load_qa_csv(path, out, _rel(path, recipe.root))
        else:
            load_qa_jsonl(path, out, _rel(path, recipe.root))
    if data["docs_dir"]:
        folder = recipe.path(data["docs_dir"])
        if folder.is_dir():
            load_documents(folder, out, recipe.root, data["max_section_chars"])
        elif data["require_docs"]:
            raise BuildError(
                f"Knowledge-base folder {folder} does not exist; set data.docs_dir in the recipe to "
                "the folder holding the ERP documents, or data.require_docs = false to build without them."
            )
        else:
            out.problem(folder, None, "knowledge-base folder does not exist; built without documents")
    for record in out.records:
        out.counts[record["kind"]] = out.counts.get(record["kind"], 0) + 1
    if not out.records:
        raise BuildError("No training records were loaded; check the data paths in the recipe "
                         f"(problems: {out.problems[:5]}).")
    return out


def document_files(recipe) -> list[Path]:
    folder = recipe.path(recipe["data"]["docs_dir"]) if recipe["data"]["docs_dir"] else None
    if folder is None or not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.suffix.lower() in FORMATS]


def input_files(recipe) -> list[Path]:
    """Every file the load stage reads: its bytes key the stage cache."""
    data = recipe["data"]
    return [recipe.path(p) for p in data["chat_logs"] + data["qa_pairs"]] + document_files(recipe)
