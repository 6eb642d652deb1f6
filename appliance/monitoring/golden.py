"""Accuracy from the golden QA set: ask each question, score the share of answers that contain
all of the item's keywords (case-insensitive)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ConfigError
from appliance.llm.base import GenerationRequest, SamplingParams, TextDelta

log = logging.getLogger(__name__)

BUNDLED_GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden_qa.jsonl"


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    keywords: tuple[str, ...]
    lang: str = ""
    answer: str = ""


def golden_path(configured: str) -> Path:
    return Path(configured).expanduser() if configured else BUNDLED_GOLDEN


def load_golden(path: Path) -> list[GoldenItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(GoldenItem(id=str(raw["id"]), question=raw["question"],
                                    keywords=tuple(raw.get("keywords") or ()), lang=raw.get("lang", ""),
                                    answer=raw.get("answer", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} line {number} is not a golden QA item "
                              f'({{"id", "question", "keywords"}}): {exc}') from exc
    return items


def passes(answer: str, keywords: tuple[str, ...]) -> bool:
    text = answer.casefold()
    return all(k.casefold() in text for k in keywords)


async def run_golden(assistant, items: list[GoldenItem], *, max_tokens: int = 192,
                     concurrency: int = 4) -> dict:
    """Ask every question (greedy, so runs are comparable); returns a golden_runs row."""
    started = time.perf_counter()
    limit = asyncio.Semaphore(concurrency)

    async def ask(item: GoldenItem) -> dict:
        async with limit:
            request = GenerationRequest(
                params=SamplingParams(temperature=0.0, max_tokens=max_tokens),
                messages=({"role": "user", "content": item.question},),
            )
            try:
                answer = await assistant.answer(request)
                text = "".join([e.text async for e in answer if isinstance(e, TextDelta)])
            except Exception as exc:  # a failed question scores 0; the run goes on
                return {"id": item.id, "passed": False, "error": str(exc)}
            return {"id": item.id, "passed": passes(text, item.keywords), "answer": text[:500]}

    results = await asyncio.gather(*(ask(item) for item in items))
    passed = sum(r["passed"] for r in results)
    backend = assistant.backend
    return {
        "ts": time.time(),
        "questions": len(items),
        "passed": passed,
        "score": passed / len(items) if items else None,
        "model_version": backend.version if backend is not None else None,
        "duration_s": time.perf_counter() - started,
        "detail": json.dumps(results, ensure_ascii=False),
    }
