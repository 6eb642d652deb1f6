"""The golden set: questions with a gold answer and the passage that holds it, scored through the
production answer path. The validation gate, the scheduled monitoring run, the build's evaluate
stage and the answers benchmark all use this module.

Items are split into a tune half and a held-out half by a hash of their id; figures that decide
anything are reported on the held-out half.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.answers.modes import EXTRACTIVE, GENERATIVE, LANGUAGES
from appliance.answers.quality import AnswerScore, score_answer, summarize
from appliance.errors import ApplianceError, ConfigError
from appliance.knowledge.analyzer import is_korean
from appliance.llm.base import GenerationRequest, SamplingParams, TextDelta

BUNDLED_GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden_qa.jsonl"
TUNE, HELD_OUT = "tune", "held-out"
SERVED = "served"  # a run in the mode the appliance serves each language in


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    answer: str  # the gold answer
    lang: str = ""
    document: str = ""  # the source that holds the answer, as the knowledge base names it
    passage: str = ""  # the span of that document that answers
    keywords: tuple[str, ...] = ()
    history: tuple[tuple[str, str], ...] = ()  # earlier (role, content) messages of a follow-up

    @property
    def half(self) -> str:
        return half_of(self.id)

    @property
    def language(self) -> str:
        return self.lang or ("ko" if is_korean(self.question) else "en")


def half_of(item_id: str) -> str:
    return TUNE if zlib.crc32(item_id.encode()) % 2 == 0 else HELD_OUT


def golden_path(configured: str | Path = "") -> Path:
    return Path(configured).expanduser() if configured else BUNDLED_GOLDEN


def load_golden(path: str | Path = "", *, limit: int = 0, half: str | None = None) -> list[GoldenItem]:
    """Items from a JSON-lines file (the bundled set when `path` is empty)."""
    path = golden_path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"Golden set {path} does not exist; check the golden_path setting.") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(GoldenItem(
                id=str(raw["id"]), question=raw["question"], answer=raw.get("answer", ""),
                lang=raw.get("lang", ""), document=raw.get("document", ""),
                passage=raw.get("passage", ""), keywords=tuple(raw.get("keywords") or ()),
                history=tuple((m["role"], m["content"]) for m in raw.get("history") or ())))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} line {number} is not a golden item "
                              f'({{"id", "question", "answer", ...}}): {exc}') from exc
    if half is not None:
        items = [i for i in items if i.half == half]
    return items[:limit] if limit else items


def passes_keywords(answer: str, keywords: Iterable[str]) -> bool:
    text = answer.casefold()
    return all(k.casefold() in text for k in keywords)


def source_name(document: str) -> str:
    """Golden files name documents relative to the sample knowledge base folder ("docs/...")."""
    return document.removeprefix("docs/")


@dataclass
class GoldenResult:
    item: GoldenItem
    mode: str
    answer: str = ""
    answer_mode: str = ""
    score: AnswerScore | None = None
    latency: float = 0.0
    error: str | None = None
    sources: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.item.id, "lang": self.item.language, "mode": self.mode,
                "answer_mode": self.answer_mode, "answer": self.answer[:600],
                "latency": round(self.latency, 3), "error": self.error,
                **(self.score.as_dict() if self.score else {"good": False})}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_golden(assistant, items: Sequence[GoldenItem], *, modes: Sequence[str] = (EXTRACTIVE,),
                     max_tokens: int = 192, concurrency: int = 4,
                     on_item: Callable[[int, int], None] | None = None) -> dict:
    """Ask every item in every mode through `assistant` (greedy, cache off, retrieval on) and
    score the answers. Returns figures per mode and language, the latency p95 of each mode and
    every answer."""
    limit = asyncio.Semaphore(concurrency)
    kb = assistant.knowledge
    documents: dict[str, str] = {}
    total = len(items) * len(modes)
    done = 0

    def document_text(name: str) -> str:
        if name not in documents:
            documents[name] = kb.document_text(source_name(name)) if kb is not None and name else ""
        return documents[name]

    async def ask(item: GoldenItem, mode: str) -> GoldenResult:
        nonlocal done
        result = GoldenResult(item, mode)
        messages = [{"role": role, "content": content} for role, content in item.history]
        messages.append({"role": "user", "content": item.question})
        request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=max_tokens),
                                    messages=tuple(messages))
        async with limit:
            started = time.perf_counter()
            try:
                stream = await assistant.answer(request, rag=True, use_cache=False,
                                                mode=None if mode == SERVED else mode)
                parts = [e.text async for e in stream if isinstance(e, TextDelta)]
                result.answer = "".join(parts)
                result.answer_mode = stream.answer_mode or ""
                result.sources = stream.sources or []
                passages = stream.passages
            except ApplianceError as exc:
                result.error = exc.message
                passages = []
            result.latency = time.perf_counter() - started
        if result.error is None:
            references = [document_text(item.document), *passages]
            result.score = await asyncio.to_thread(
                score_answer, result.answer, question=item.question, gold_answer=item.answer,
                references=references)
        done += 1
        if on_item is not None:
            on_item(done, total)
        return result

    started = time.perf_counter()
    results = await asyncio.gather(*(ask(item, mode) for mode in modes for item in items))
    return summarize_results(results, modes, seconds=time.perf_counter() - started)


def summarize_results(results: Sequence[GoldenResult], modes: Sequence[str], *,
                      seconds: float = 0.0) -> dict:
    figures: dict[str, dict[str, dict]] = {}
    for mode in modes:
        of_mode = [r for r in results if r.mode == mode]
        figures[mode] = {}
        for language in (*LANGUAGES, "all"):
            chosen = [r for r in of_mode if language == "all" or r.item.language == language]
            scores = [r.score or AnswerScore(False, False, False, False) for r in chosen]
            if chosen:
                figures[mode][language] = summarize(scores)
        latencies = sorted(r.latency for r in of_mode)
        figures[mode]["latency_p95"] = percentile(latencies, 0.95)
        figures[mode]["errors"] = sum(1 for r in of_mode if r.error)
    errors = [r.error for r in results if r.error]
    return {"figures": figures, "items": len({r.item.id for r in results}),
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": seconds, "results": [r.as_dict() for r in results]}


RETRIEVAL, OPEN_BOOK = "retrieval", "open_book"
OPEN_BOOK_PROMPT = ("You answer questions about the company's ERP system. Use only this source, and "
                    "quote its codes and names exactly:\n\n{source}")


async def score(backend, items: Sequence[GoldenItem], *, knowledge=None, knowledge_settings=None,
                answer_settings=None, max_tokens: int = 96, concurrency: int = 4,
                on_item: Callable[[int, int], None] | None = None) -> dict:
    """A model version's golden figures, as the validation gate and probation compare them.

    With a knowledge base ("retrieval"), every question is answered through the production path
    in each mode `answers.mode` may use (both for auto), scored per language; the score is the
    good-answer rate of the mode each language gets, averaged over the languages, and the
    per-language figures are what auto mode later decides by. Without one ("open book"), each
    question is asked with its gold answer as the only source and scored by its keywords.
    """
    from appliance.answers import modes as answer_modes
    from appliance.assistant import Assistant
    from appliance.cache import ResponseCache
    from appliance.settings import AnswerSettings

    answer_settings = answer_settings or AnswerSettings()
    if knowledge is None:
        return await _open_book(backend, items, max_tokens=max_tokens, concurrency=concurrency,
                                on_item=on_item)
    assistant = Assistant(backend, ResponseCache(1, 1.0, enabled=False), knowledge=knowledge,
                          knowledge_settings=knowledge_settings, answer_settings=answer_settings)
    setting = answer_settings.mode
    used = (EXTRACTIVE, GENERATIVE) if setting == answer_modes.AUTO else (setting,)
    run = await run_golden(assistant, items, modes=used, max_tokens=max_tokens,
                           concurrency=concurrency, on_item=on_item)
    figures = by_language(run["figures"])
    served = {lang: answer_modes.choose(setting, lang, figures) for lang in figures}
    good = {lang: figures[lang][mode]["good"] for lang, mode in served.items()}
    model_mode = GENERATIVE if GENERATIVE in used else used[0]
    results = run["results"]
    passed = sum(1 for r in results if r["good"] and r["mode"] == served.get(r["lang"]))
    return {
        "mode": RETRIEVAL,
        "score": sum(good.values()) / len(good) if good else 0.0,
        "items": run["items"],
        "passed": passed,
        "errors": run["errors"],
        "first_error": run["first_error"],
        # The model's own latency: the generated answers' (quoted ones do not depend on it).
        "latency_p95": run["figures"][model_mode]["latency_p95"],
        "seconds": run["seconds"],
        "answers": figures,
        "served_modes": served,
        "knowledge_version": knowledge.version,
    }


async def _open_book(backend, items: Sequence[GoldenItem], *, max_tokens: int, concurrency: int,
                     on_item) -> dict:
    limit = asyncio.Semaphore(concurrency)
    done = 0

    async def ask(item: GoldenItem) -> tuple[bool, float, str | None]:
        nonlocal done
        messages = ({"role": "system", "content": OPEN_BOOK_PROMPT.format(source=item.answer)},
                    {"role": "user", "content": item.question})
        async with limit:
            started = time.perf_counter()
            try:
                events = await backend.start(GenerationRequest(
                    SamplingParams(temperature=0.0, max_tokens=max_tokens), messages=messages))
                text = "".join([e.text async for e in events if isinstance(e, TextDelta)])
            except ApplianceError as exc:
                return False, time.perf_counter() - started, exc.message
            finally:
                done += 1
                if on_item is not None:
                    on_item(done, len(items))
            return passes_keywords(text, item.keywords), time.perf_counter() - started, None

    started = time.perf_counter()
    results = await asyncio.gather(*(ask(item) for item in items))
    errors = [r[2] for r in results if r[2]]
    return {"mode": OPEN_BOOK, "score": sum(r[0] for r in results) / len(results) if results else 0.0,
            "items": len(results), "passed": sum(r[0] for r in results), "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "latency_p95": percentile(sorted(r[1] for r in results), 0.95),
            "seconds": time.perf_counter() - started}


async def accuracy_run(assistant, items: Sequence[GoldenItem], *, max_tokens: int = 192,
                       concurrency: int = 4) -> dict:
    """The scheduled accuracy run: every question as the appliance serves it now (its mode per
    language); returns a golden_runs row. Its score is the good-answer rate, or without a
    knowledge base (nothing to judge faithfulness against) the share holding all keywords."""
    run = await run_golden(assistant, items, modes=(SERVED,), max_tokens=max_tokens,
                           concurrency=concurrency)
    results = run["results"]
    if assistant.knowledge is None:
        keywords = {item.id: item.keywords for item in items}
        for result in results:
            result["good"] = result["error"] is None and passes_keywords(result["answer"],
                                                                         keywords[result["id"]])
    passed = sum(1 for r in results if r["good"])
    backend = assistant.backend
    return {
        "ts": time.time(),
        "questions": len(results),
        "passed": passed,
        "score": passed / len(results) if results else None,
        "model_version": backend.version if backend is not None else None,
        "duration_s": run["seconds"],
        "detail": json.dumps(results, ensure_ascii=False),
    }


def by_language(figures: dict) -> dict[str, dict[str, dict]]:
    """{mode: {lang: summary}} re-keyed as {lang: {mode: summary}} (what the registry stores)."""
    out: dict[str, dict[str, dict]] = {}
    for mode, per in figures.items():
        for language, summary in per.items():
            if language in LANGUAGES:
                out.setdefault(language, {})[mode] = summary
    return out


__all__ = ["BUNDLED_GOLDEN", "EXTRACTIVE", "GENERATIVE", "OPEN_BOOK", "RETRIEVAL", "SERVED",
           "GoldenItem", "GoldenResult", "HELD_OUT", "TUNE", "accuracy_run", "by_language",
           "golden_path", "half_of", "load_golden", "passes_keywords", "percentile", "run_golden",
           "score", "summarize_results"]
