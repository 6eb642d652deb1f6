"""Answer quality of built models, measured through the path the appliance serves: retrieval over a
knowledge base, evidence selection, then the GGUF answering in generative mode with the verifier
(falling back to quotes as serving does), and the extractive answer for comparison. Held-out items
only (`appliance.answers.golden.half_of`); scored by the appliance's answer scorer."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from appliance.answers.golden import HELD_OUT, GoldenItem, load_golden, source_name
from appliance.answers.modes import EXTRACTIVE, GENERATIVE, LANGUAGES

console = Console(stderr=True)
RATES = ("good", "degenerate", "idk", "faithful", "covers")


@dataclass
class AnswerSet:
    name: str  # "golden" (over the build's documents) or "manuals" (a knowledge base never trained on)
    docs: Path
    items: list[GoldenItem]


def held_out_items(paths: Sequence[Path], per_language: int) -> list[GoldenItem]:
    """The held-out half of each file, at most `per_language` items of each language per file."""
    items = []
    for path in paths:
        taken: Counter = Counter()
        for item in load_golden(path, half=HELD_OUT):
            if per_language and taken[item.language] >= per_language:
                continue
            taken[item.language] += 1
            items.append(item)
    return items


def answer_sets(recipe) -> list[AnswerSet]:
    cfg = recipe["evaluate"]
    sets = []
    golden = [recipe.path(p) for p in cfg["answer_golden"]]
    if golden:
        sets.append(AnswerSet("golden", recipe.path(recipe["data"]["docs_dir"]),
                              held_out_items(golden, cfg["answer_items"])))
    probes = [recipe.path(p) for p in cfg["answer_probes"]]
    if probes:
        sets.append(AnswerSet("manuals", recipe.path(cfg["answer_probes_dir"]),
                              held_out_items(probes, cfg["answer_items"])))
    return [s for s in sets if s.items]


def rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer scorer's summary (`appliance.answers.quality.summarize`) over scored result rows."""
    n = len(rows)
    if not n:
        return {"n": 0}
    out: dict[str, Any] = {"n": n}
    for key in RATES:
        out[key] = round(sum(1 for r in rows if r.get(key)) / n, 4)
    out["invented"] = sum(len(r.get("invented") or ()) for r in rows)
    return out


async def _run(kb, settings, items: list[GoldenItem], gguf: Path, modes: Sequence[str], max_tokens: int) -> dict:
    from appliance.answers.golden import run_golden
    from appliance.llm.local import LocalBackend
    from appliance.settings import EngineSettings
    from appliance_build.knowledge import assistant_for

    # Four at a time: on 2 CPU cores the answers are prompt-bound (evidence of 350-1,100 tokens, short
    # answers), and 2, 4 or 8 slots and concurrent questions took the same time within the noise of a
    # shared machine (16 manual probes: 87-115 s each, 2026-12-03).
    backend = LocalBackend(EngineSettings(model_path=str(gguf), slots=4, max_request_tokens=2048,
                                          max_queue=len(items) + 8))
    try:
        assistant = assistant_for(kb, settings, backend)
        return await run_golden(assistant, items, modes=modes, max_tokens=max_tokens, concurrency=4)
    finally:
        await backend.close()


def score_set(answer_set: AnswerSet, models: list[tuple[str, Path]], embedder_dir: Path, work: Path,
              max_tokens: int, seconds: dict[str, float] | None = None) -> dict[str, list[dict]]:
    """Every item of the set answered extractively (once) and by each model in generative mode:
    {label: result rows}, labels "extractive" and the models' labels. `seconds` gets the wall time
    of each step ("knowledge base" and each model's run)."""
    import time

    from appliance_build.knowledge import open_knowledge

    seconds = {} if seconds is None else seconds
    rows: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with open_knowledge(answer_set.docs, embedder_dir, work) as (kb, settings):
        seconds["knowledge base"] = round(time.perf_counter() - started, 1)
        for n, (label, gguf) in enumerate(models):
            modes = (EXTRACTIVE, GENERATIVE) if n == 0 else (GENERATIVE,)
            console.print(f"answers: {answer_set.name}, {len(answer_set.items)} held-out items, {label} "
                          f"({' and '.join(modes)})")
            started = time.perf_counter()
            run = asyncio.run(_run(kb, settings, answer_set.items, gguf, modes, max_tokens))
            seconds[label] = round(time.perf_counter() - started, 1)
            if run["errors"]:
                console.print(f"[yellow]{run['errors']} answers failed[/]: {run['first_error']}")
            for row in run["results"]:
                rows.setdefault(label if row["mode"] == GENERATIVE else EXTRACTIVE, []).append(row)
    return rows


def evaluate_answers(recipe, models: list[tuple[str, Path]], embedder_dir: Path, work: Path,
                     train_documents: Sequence[str] | None) -> dict[str, Any]:
    """Figures per set, language and model (plus the extractive answer), the served-answer mix of
    each model, and answers side by side. `train_documents`: KB sources the model trained on (the
    golden items are also split by whether their document was one of them)."""
    cfg = recipe["evaluate"]
    sets = answer_sets(recipe)
    labels = [EXTRACTIVE, *(label for label, _ in models)]
    per_set: dict[str, dict[str, list[dict]]] = {}
    items: dict[str, GoldenItem] = {}
    seconds: dict[str, dict[str, float]] = {}
    for answer_set in sets:
        seconds[answer_set.name] = {}
        per_set[answer_set.name] = score_set(answer_set, models, embedder_dir, work / answer_set.name,
                                             cfg["answer_max_tokens"], seconds[answer_set.name])
        items.update({f"{answer_set.name}:{i.id}": i for i in answer_set.items})

    figures: dict[str, Any] = {}
    for name, rows in per_set.items():
        figures[name] = {lang: {label: rates([r for r in rows.get(label, []) if r["lang"] == lang])
                                for label in labels} for lang in LANGUAGES}
    figures["all"] = {lang: {label: rates([r for rows in per_set.values() for r in rows.get(label, [])
                                          if r["lang"] == lang]) for label in labels} for lang in LANGUAGES}
    if train_documents is not None and "golden" in per_set:
        seen = set(train_documents)
        by_id = {i.id: i for s in sets if s.name == "golden" for i in s.items}
        for group, wanted in (("golden, document trained on", True), ("golden, document never trained on", False)):
            chosen = {label: [r for r in rows if (source_name(by_id[r["id"]].document) in seen) == wanted]
                      for label, rows in per_set["golden"].items()}
            figures[group] = {lang: {label: rates([r for r in chosen.get(label, []) if r["lang"] == lang])
                                     for label in labels} for lang in LANGUAGES}
    served = {label: dict(Counter(r["answer_mode"] or "error" for rows in per_set.values()
                                  for r in rows.get(label, []))) for label, _ in models}
    return {"sets": {s.name: {"items": len(s.items), "docs": str(s.docs),
                              "languages": dict(Counter(i.language for i in s.items))} for s in sets},
            "labels": labels, "figures": figures, "served_modes": served, "seconds": seconds,
            "side_by_side": side_by_side(per_set, items, labels, cfg["answer_examples"])}


def side_by_side(per_set: dict[str, dict[str, list[dict]]], items: dict[str, GoldenItem], labels: list[str],
                 per_language: int) -> list[dict[str, Any]]:
    """The same items answered by each model, per language: the first few where the answers differ."""
    out = []
    for lang in LANGUAGES:
        shown = 0
        for name, rows in per_set.items():
            by_label = {label: {r["id"]: r for r in rows.get(label, [])} for label in labels}
            for item_id, extractive in by_label[EXTRACTIVE].items():
                if shown >= per_language or extractive["lang"] != lang:
                    continue
                answers = {label: by_label[label].get(item_id) for label in labels}
                if len({(a or {}).get("answer", "") for a in answers.values()}) < 2:
                    continue  # every model fell back to the same quote: nothing to compare
                item = items[f"{name}:{item_id}"]
                out.append({"set": name, "id": item_id, "lang": lang, "question": item.question,
                            "gold": item.answer, "answers": {
                                label: {"answer": a["answer"], "good": a.get("good", False),
                                        "answer_mode": a.get("answer_mode"), "invented": a.get("invented", [])}
                                for label, a in answers.items() if a is not None}})
                shown += 1
    return out


def manifest_figures(result: dict[str, Any], model_label: str) -> dict[str, dict[str, dict]]:
    """{lang: {"extractive": summary, "generative": summary}} of the shipped model over every
    held-out item: the `answer_figures` of manifest.json."""
    overall = result["figures"]["all"]
    return {lang: {EXTRACTIVE: overall[lang][EXTRACTIVE], GENERATIVE: overall[lang][model_label]}
            for lang in LANGUAGES if overall[lang][EXTRACTIVE].get("n")}
