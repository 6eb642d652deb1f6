#!/usr/bin/env python3
"""Answer quality per language and mode, with baselines, on the held-out half of the probes.

Method
- Two probe sets, each split into tune and held-out halves by a hash of the item id (settings
  are chosen on the tune half; this prints the half asked for, held-out by default):
  * golden: the bundled golden set (appliance/data/golden_qa.jsonl: 96 questions over the sample
    knowledge base, half Korean), asked against a knowledge base holding the sample documents;
  * manuals: the passage-level probes of six ERP user manuals written for evaluation
    (benchmarks/data/manuals, three Korean, three English, other products than the sample's),
    asked against the whole evaluation corpus (sample knowledge base plus the manuals, 197
    documents), so other manuals' passages on the same subjects compete.
- Every question goes through the production answer path (appliance.assistant.Assistant: retrieval
  query, hybrid retrieval, evidence selection, then an extractive answer or a generated one checked
  by the verifier), greedy, response cache off, with the bundled SmolLM2-135M (Q8_0).
- Scores (appliance/answers/quality.py): degenerate = a word 4-gram repeated 3+ times or a restated
  question; idk = a "cannot find" reply; faithful = at least 80% of the answer's content units
  (words of 2+ characters without stop words, Hangul syllable bigrams) occur in the gold document
  or the retrieved passages; covers = at least 50% of the units of the gold answer's first 200
  characters occur in the answer; good = covers and faithful and not degenerate; invented =
  numbers or codes in the answer found in neither.
- Baselines in the same run: the top search hit's text (no model), and llama.cpp's own server
  (`python -m llama_cpp.server`, same GGUF) with a plain RAG prompt of the top 4 passages.
- Follow-ups (--follow-ups): the conversations of benchmarks/data/probes/*conversations.jsonl; for
  the last turn, passage recall@5, cites (the answer cites a passage that holds the gold passage)
  and the good-answer rate, with the earlier turns sent as the
  conversation (gold answers as the assistant turns), next to the same figures when only the last
  message is searched.
- Latency: server-side time of extractive answers (retrieval, evidence, composition), and for
  generated answers at one stream the time to the first verified sentence, and the time to the
  model's first token (retrieval, evidence, prefill of the evidence prompt) with the prompt's size.

Usage: python benchmarks/answers.py [--half held-out|tune|all] [--sets golden,manuals]
       [--modes extractive,generative] [--baselines] [--follow-ups] [--show N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from corpus import (  # noqa: E402
    conversations,
    holds,
    open_corpus,
    passage_probes,
    unanswerable,
)

from appliance.answers.golden import GoldenItem, load_golden, run_golden  # noqa: E402
from appliance.answers.quality import score_answer, summarize  # noqa: E402
from appliance.assistant import Assistant  # noqa: E402
from appliance.cache import ResponseCache  # noqa: E402
from appliance.engine.model import resolve_model_path  # noqa: E402
from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path  # noqa: E402
from appliance.llm.base import GenerationRequest, SamplingParams, TextDelta  # noqa: E402
from appliance.llm.local import LocalBackend  # noqa: E402
from appliance.settings import EngineSettings, Settings, load_settings  # noqa: E402

CACHE = Path(os.environ.get("APPLIANCE_BENCH_CACHE", "~/.cache/erp-appliance-bench")).expanduser()
EMBEDDER = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser() / "embedder"
PEER_PROMPT = ("Answer the question using only these sources. Cite them like [1].\n\n{sources}")


def sample_kb(data_dir: Path) -> KnowledgeBase:
    settings = load_settings(data_dir=data_dir)
    settings.knowledge.embedder_path = str(EMBEDDER)
    kb = KnowledgeBase.open(settings)
    if not kb.store.documents():
        kb.ingest([sample_kb_path()])
    return kb


def probe_items(half: str) -> list[GoldenItem]:
    return [GoldenItem(p.id, p.question, p.answer, p.lang, p.document, p.passage)
            for p in passage_probes() if p.origin != "golden"
            and (half == "all" or p.half == half)]


def assistant_for(backend, kb, settings: Settings) -> Assistant:
    return Assistant(backend, ResponseCache(1, 1.0, enabled=False), knowledge=kb,
                     knowledge_settings=settings.knowledge, answer_settings=settings.answers)


def top_hit_scores(kb: KnowledgeBase, items: list[GoldenItem]) -> dict:
    out: dict[str, list] = {}
    for item in items:
        hits = kb.search(item.question, 4)
        text = hits[0].text if hits else ""
        refs = [kb.document_text(item.document.removeprefix("docs/")), *[h.text for h in hits]]
        out.setdefault(item.language, []).append(
            score_answer(text, question=item.question, gold_answer=item.answer, references=refs))
    return {lang: summarize(scores) for lang, scores in out.items()}


def peer_scores(kb: KnowledgeBase, items: list[GoldenItem], model: str, max_tokens: int) -> dict:
    """llama.cpp's own server with a plain RAG prompt of the top 4 passages."""
    port = 8793
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "tests" / "llama_server.py"),
         "--model", model, "--model_alias", "peer", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "8192", "--verbose", "False"],  # four Korean passages pass 2,048 tokens
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        out: dict[str, list] = {}
        for item in items:
            hits = kb.search(item.question, 4)
            sources = "\n\n".join(f"[{i + 1}] {h.title}\n{h.text}" for i, h in enumerate(hits))
            body = {"model": "peer", "temperature": 0, "max_tokens": max_tokens,
                    "messages": [{"role": "system", "content": PEER_PROMPT.format(sources=sources)},
                                 {"role": "user", "content": item.question}]}
            reply = httpx.post(f"{url}/chat/completions", json=body, timeout=300).json()
            if "choices" not in reply:  # a refused request answers nothing, and scores so
                print(f"llama.cpp server refused {item.id}: {str(reply)[:200]}", file=sys.stderr)
                text = ""
            else:
                text = reply["choices"][0]["message"]["content"]
            refs = [kb.document_text(item.document.removeprefix("docs/")), *[h.text for h in hits]]
            out.setdefault(item.language, []).append(
                score_answer(text, question=item.question, gold_answer=item.answer, references=refs))
        return {lang: summarize(scores) for lang, scores in out.items()}
    finally:
        server.terminate()
        server.wait()


async def latencies(assistant: Assistant, items: list[GoldenItem], mode: str, n: int) -> dict:
    """One stream at a time: total time of an extractive answer; time to the first verified
    text of a generated one."""
    firsts, totals = [], []
    for item in items[:n]:
        request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=160),
                                    messages=({"role": "user", "content": item.question},))
        started = time.perf_counter()
        stream = await assistant.answer(request, rag=True, mode=mode, use_cache=False)
        first = None
        async for event in stream:
            if isinstance(event, TextDelta) and first is None:
                first = time.perf_counter() - started
        totals.append(time.perf_counter() - started)
        firsts.append(first if first is not None else totals[-1])
    out = {"n": len(totals), "first_p50_ms": 1000 * statistics.median(firsts),
           "total_p50_ms": 1000 * statistics.median(totals),
           "total_p95_ms": 1000 * sorted(totals)[int(0.95 * (len(totals) - 1))]}
    if mode == "generative":
        out.update(await model_first_tokens(assistant, items[:n]))
    return out


async def model_first_tokens(assistant: Assistant, items: list[GoldenItem]) -> dict:
    """Time to the model's first token of a grounded answer (retrieval, evidence selection, the
    evidence prompt's prefill, one token), before the verifier holds it back to the end of its
    sentence; with the prompt's size in tokens."""
    backend = assistant.backend
    firsts, prompts = [], []
    by_language: dict[str, list[tuple[float, int]]] = {}
    for item in items:
        request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=160),
                                    messages=({"role": "user", "content": item.question},))
        started = time.perf_counter()
        found = assistant.ground(request.messages)
        if not found.evidence.answers(assistant.answer_settings.min_support):
            continue  # declined: no model call
        grounded, _ = assistant._generative(request, found)
        generation = await backend.start(grounded)
        first = None
        async for event in generation:
            if first is None and isinstance(event, TextDelta):
                first = time.perf_counter() - started
                generation.cancel()
        firsts.append(first if first is not None else time.perf_counter() - started)
        prompts.append(generation.prompt_tokens)
        by_language.setdefault(item.language, []).append((firsts[-1], prompts[-1]))
    return {"model_first_p50_ms": 1000 * statistics.median(firsts),
            "prompt_tokens_p50": statistics.median(prompts) if prompts else 0,
            # Korean evidence costs this English model about three tokens a syllable
            "by_language": {lang: {"n": len(pairs),
                                   "model_first_p50_ms": 1000 * statistics.median(f for f, _ in pairs),
                                   "prompt_tokens_p50": statistics.median(p for _, p in pairs)}
                            for lang, pairs in sorted(by_language.items())}}


async def follow_ups(assistant: Assistant, kb: KnowledgeBase, half: str, mode: str,
                     sets: tuple[str, ...] = ("sample",)) -> dict:
    """Conversations asked turn by turn, each earlier answer the appliance's own (as a client
    sends it back); for the last turn: passage recall@5 and the good-answer rate, next to the
    same with only the last message searched."""

    async def ask(messages: list[dict]) -> tuple[str, list[str], list[str]]:
        request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=160), messages=tuple(messages))
        stream = await assistant.answer(request, rag=True, mode=mode, use_cache=False)
        text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
        sources = stream.sources or []
        marks = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
        cited_ids = [s["chunk_id"] for i, s in enumerate(sources, 1) if i in marks]
        cited = list(kb.store.chunk_texts(cited_ids).values()) if cited_ids else []
        return text, stream.passages, cited

    results: dict[str, dict[str, list]] = {}
    for conv in conversations():
        if (half != "all" and conv.half != half) or not conv.origin.startswith(sets):
            continue
        history: list[dict] = []
        for turn in conv.turns[:-1]:
            history.append({"role": "user", "content": turn.question})
            answer, _, _ = await ask(history)
            history.append({"role": "assistant", "content": answer})
        last = conv.turns[-1]
        kind = conv.kind if conv.kind == "topic-change" else "follow-up"
        group = results.setdefault(f"{conv.lang} {kind}", {})
        for label, messages in (("conversation", [*history, {"role": "user", "content": last.question}]),
                                ("last message only", [{"role": "user", "content": last.question}])):
            text, passages, cited = await ask(messages)
            found = any(holds(p, last.passage) for p in passages[:5])
            cites = any(holds(c, last.passage) for c in cited)
            refs = [kb.document_text(last.document), *passages]
            score = score_answer(text, question=last.question, gold_answer=last.answer, references=refs)
            group.setdefault(label, []).append((found, cites, score))
    out = {}
    for group, by_label in sorted(results.items()):
        out[group] = {label: {"n": len(rows), "recall@5": round(sum(f for f, _, _ in rows) / len(rows), 3),
                              "cites": round(sum(c for _, c, _ in rows) / len(rows), 3),
                              "good": round(sum(s.good for _, _, s in rows) / len(rows), 3)}
                      for label, rows in by_label.items()}
    return out


def refusals(assistant_kb: KnowledgeBase, assistant: Assistant) -> dict:
    out = {}
    for item in unanswerable():
        request = GenerationRequest(SamplingParams(temperature=0.0), messages=({"role": "user", "content": item["question"]},))
        stream = asyncio.run(assistant.answer(request, rag=True, use_cache=False))
        refused = not stream.grounded
        out.setdefault(item["lang"], []).append(refused)
    return {lang: round(sum(v) / len(v), 3) for lang, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", default="held-out", choices=["held-out", "tune", "all"])
    parser.add_argument("--sets", default="golden,manuals")
    parser.add_argument("--modes", default="extractive,generative")
    parser.add_argument("--baselines", action="store_true")
    parser.add_argument("--follow-ups", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--show", type=int, default=0, help="print this many answers per set")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    sets = [s for s in args.sets.split(",") if s]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; half: {args.half}; modes: {modes}")
    model = str(resolve_model_path("", bundled_type="q8_0", cache_dir=CACHE / "models"))
    backend = LocalBackend(EngineSettings(model_path=model, slots=8, max_request_tokens=2048))
    settings = Settings()
    report: dict = {"half": args.half, "modes": modes, "sets": {}}
    try:
        for name in sets:
            if name == "golden":
                kb = sample_kb(CACHE / "sample-kb")
                items = load_golden(half=None if args.half == "all" else args.half)
            else:
                kb = open_corpus(CACHE / "corpus", EMBEDDER)
                items = probe_items(args.half)
            assistant = assistant_for(backend, kb, settings)
            started = time.perf_counter()
            run = asyncio.run(run_golden(assistant, items, modes=modes, max_tokens=args.max_tokens))
            entry = {"items": len(items), "seconds": round(time.perf_counter() - started, 1),
                     "figures": {m: {k: v for k, v in f.items() if k in ("ko", "en")}
                                 for m, f in run["figures"].items()}}
            if args.baselines:
                entry["top_hit"] = top_hit_scores(kb, items)
                entry["llama_cpp_server"] = peer_scores(kb, items, model, args.max_tokens)
            # Latency of questions asked for the first time: no vector or passage cached yet.
            kb.batcher.forget()
            entry["latency"] = {m: asyncio.run(latencies(assistant_for(backend, kb, settings), items, m, 20))
                                for m in modes}
            if name == "golden":
                entry["declined_out_of_scope"] = refusals(kb, assistant)
            if args.follow_ups:
                entry["follow_ups"] = asyncio.run(follow_ups(
                    assistant, kb, args.half, modes[0],
                    ("sample",) if name == "golden" else ("ko-", "en-")))
            report["sets"][name] = entry
            print_set(name, entry)
            for result in run["results"][: args.show]:
                print(f"--- {result['id']} [{result['lang']}/{result['mode']}] good={result['good']}\n"
                      f"{result['answer']}")
            kb.close()
    finally:
        asyncio.run(backend.close())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))


def print_set(name: str, entry: dict) -> None:
    print(f"\n== {name}: {entry['items']} questions ({entry['seconds']} s)")
    print(f"{'system':28} {'lang':4} {'n':>3} {'good':>6} {'degen':>6} {'idk':>6} {'faithful':>8} "
          f"{'covers':>6} {'invented':>8}")
    rows = [(f"appliance {m}", f) for m, f in entry["figures"].items()]
    rows += [(label, entry[key]) for key, label in (("top_hit", "top search hit"),
                                                     ("llama_cpp_server", "llama.cpp server, plain RAG"))
             if key in entry]
    for label, per_lang in rows:
        for lang in ("ko", "en"):
            f = per_lang.get(lang)
            if f:
                print(f"{label:28} {lang:4} {f['n']:>3} {f['good']:>6.2f} {f['degenerate']:>6.2f} "
                      f"{f['idk']:>6.2f} {f['faithful']:>8.2f} {f['covers']:>6.2f} {f['invented']:>8}")
    for mode, lat in entry.get("latency", {}).items():
        print(f"latency {mode}: first text p50 {lat['first_p50_ms']:.0f} ms, whole answer p50 "
              f"{lat['total_p50_ms']:.0f} ms, p95 {lat['total_p95_ms']:.0f} ms (one stream, n={lat['n']})")
        if "model_first_p50_ms" in lat:
            print(f"latency {mode}: the model's first token p50 {lat['model_first_p50_ms']:.0f} ms "
                  f"(before verification; evidence prompt p50 {lat['prompt_tokens_p50']:.0f} tokens)")
            for lang, part in lat.get("by_language", {}).items():
                print(f"latency {mode}, {lang} questions: the model's first token p50 "
                      f"{part['model_first_p50_ms']:.0f} ms, prompt p50 {part['prompt_tokens_p50']:.0f} "
                      f"tokens (n={part['n']})")
    if "declined_out_of_scope" in entry:
        print(f"out-of-scope questions declined: {entry['declined_out_of_scope']}")
    for group, by_label in entry.get("follow_ups", {}).items():
        parts = "; ".join(f"{label}: recall@5 {v['recall@5']:.2f}, cites {v['cites']:.2f}, good {v['good']:.2f} (n={v['n']})"
                          for label, v in by_label.items())
        print(f"follow-ups {group}: {parts}")


if __name__ == "__main__":
    main()
