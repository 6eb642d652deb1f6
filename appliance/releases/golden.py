"""Score a backend on the golden QA set: share of answers holding all of an item's keywords.

Until the knowledge base is wired into this path, each question is asked with its reference answer
as the retrieved source ("open book"), so the score measures grounded answering, which is what the
appliance does in production, and a model that ignores its sources or emits garbage scores low.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError, ConfigError
from appliance.llm.base import GenerationRequest, LLMBackend, SamplingParams, TextDelta

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
                concurrency: int = 8) -> dict:
    """Ask every item greedily (so runs compare); returns score, error count and latencies."""
    limit = asyncio.Semaphore(concurrency)

    async def ask(item: GoldenItem) -> tuple[bool, float, str | None]:
        messages = ({"role": "system", "content": SYSTEM_PROMPT.format(source=item.answer)},
                    {"role": "user", "content": item.question})
        request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=max_tokens), messages=messages)
        async with limit:
            started = time.perf_counter()
            try:
                generation = await backend.start(request)
                parts = [e.text async for e in generation if isinstance(e, TextDelta)]
            except ApplianceError as exc:
                return False, time.perf_counter() - started, exc.message
            return passes("".join(parts), item.keywords), time.perf_counter() - started, None

    started = time.perf_counter()
    results = await asyncio.gather(*(ask(item) for item in items))
    latencies = sorted(r[1] for r in results)
    errors = [r[2] for r in results if r[2]]
    return {
        "score": sum(1 for r in results if r[0]) / len(results) if results else 0.0,
        "items": len(results),
        "passed": sum(1 for r in results if r[0]),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "latency_p95": percentile(latencies, 0.95),
        "latency_mean": sum(latencies) / len(latencies) if latencies else 0.0,
        "seconds": time.perf_counter() - started,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
