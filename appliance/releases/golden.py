"""Score a backend on the golden QA set: share of answers holding all of an item's keywords.

With a knowledge base, each question is answered as in production: retrieval from the knowledge
base, then a grounded prompt ("retrieval"). Without one, each question is asked with its reference
answer as the source ("open book"). Either way a model that ignores its sources or emits garbage
scores low; scores are only compared between runs of the same mode.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError, ConfigError
from appliance.llm.base import GenerationRequest, LLMBackend, SamplingParams, TextDelta

RETRIEVAL, OPEN_BOOK = "retrieval", "open_book"

BUNDLED_GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden_qa.jsonl"
SYSTEM_PROMPT = ("You answer questions about the company's ERP system. Use only this source, and "
                 "quote its codes and names exactly:\n\n{source}")


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    answer: str
    keywords: tuple[str, ...]


def load_golden(path: str | Path = "", limit: int = 0) -> list[GoldenItem]:
    path = Path(path).expanduser() if path else BUNDLED_GOLDEN
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"Golden QA set {path} does not exist; check releases.golden_path.") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(GoldenItem(str(raw["id"]), raw["question"], raw.get("answer", ""),
                                    tuple(raw.get("keywords") or ())))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} line {number} is not a golden QA item: {exc}") from exc
    return items[:limit] if limit else items


def passes(answer: str, keywords: tuple[str, ...]) -> bool:
    text = answer.casefold()
    return all(k.casefold() in text for k in keywords)


async def score(backend: LLMBackend, items: list[GoldenItem], *, max_tokens: int = 96,
                concurrency: int = 8, knowledge=None, knowledge_settings=None,
                on_item=None) -> dict:
    """Ask every item greedily (so runs compare); returns score, error count and latencies.

    `knowledge`: a KnowledgeBase to retrieve from (else open book); `on_item(done, total)` hears
    progress.
    """
    limit = asyncio.Semaphore(concurrency)
    mode = RETRIEVAL if knowledge is not None else OPEN_BOOK
    assistant = None
    if knowledge is not None:
        from appliance.assistant import Assistant
        from appliance.cache import ResponseCache

        # The production answer path with the cache off: retrieval, grounding, then the model.
        assistant = Assistant(backend, ResponseCache(1, 1.0, enabled=False), knowledge=knowledge,
                              knowledge_settings=knowledge_settings)
    done = 0

    async def ask(item: GoldenItem) -> tuple[bool, float, str | None, bool]:
        nonlocal done
        sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        async with limit:
            started = time.perf_counter()
            grounded = False
            try:
                if assistant is not None:
                    request = GenerationRequest(sampling, messages=({"role": "user", "content": item.question},))
                    events = await assistant.answer(request, rag=True)
                    grounded = bool(events.grounded)
                else:
                    messages = ({"role": "system", "content": SYSTEM_PROMPT.format(source=item.answer)},
                                {"role": "user", "content": item.question})
                    events = await backend.start(GenerationRequest(sampling, messages=messages))
                parts = [e.text async for e in events if isinstance(e, TextDelta)]
            except ApplianceError as exc:
                return False, time.perf_counter() - started, exc.message, grounded
            finally:
                done += 1
                if on_item is not None:
                    on_item(done, len(items))
            return passes("".join(parts), item.keywords), time.perf_counter() - started, None, grounded

    started = time.perf_counter()
    results = await asyncio.gather(*(ask(item) for item in items))
    latencies = sorted(r[1] for r in results)
    errors = [r[2] for r in results if r[2]]
    out = {
        "mode": mode,
        "score": sum(1 for r in results if r[0]) / len(results) if results else 0.0,
        "items": len(results),
        "passed": sum(1 for r in results if r[0]),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "latency_p95": percentile(latencies, 0.95),
        "latency_mean": sum(latencies) / len(latencies) if latencies else 0.0,
        "seconds": time.perf_counter() - started,
    }
    if mode == RETRIEVAL:
        out["grounded"] = sum(1 for r in results if r[3])  # answers that found their sources
        out["knowledge_version"] = knowledge.version
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
