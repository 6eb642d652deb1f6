"""The evaluation corpus and its probes, shared by benchmarks/retrieval.py and benchmarks/answers.py.

The corpus is the bundled sample knowledge base plus six ERP user manuals written for evaluation
(benchmarks/data/manuals: three Korean, three English). Probes name the passage that answers them
(a verbatim span of the document), so retrieval is scored at passage level: a retrieved chunk
counts when it holds that span. Every probe belongs to the tune or the held-out half by a hash of
its id (`appliance.answers.golden.half_of`); settings are chosen on the tune half and figures are
reported on the held-out half.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from appliance.answers.golden import half_of  # noqa: E402
from appliance.answers.text import content_units, plain  # noqa: E402
from appliance.knowledge.knowledge_base import KnowledgeBase, sample_kb_path  # noqa: E402
from appliance.settings import load_settings  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
MANUALS = DATA / "manuals"
PROBES = DATA / "probes"
GOLDEN = [Path(__file__).resolve().parents[1] / "appliance" / "data" / "golden_qa.jsonl"]
UNANSWERABLE = DATA / "unanswerable.jsonl"
CORPUS_ROOTS = (sample_kb_path(), MANUALS)


@dataclass(frozen=True)
class Turn:
    question: str
    document: str  # source name in the knowledge base
    passage: str
    answer: str


@dataclass(frozen=True)
class Probe:
    id: str
    lang: str
    question: str
    document: str
    passage: str
    answer: str
    origin: str  # which file it came from

    @property
    def half(self) -> str:
        return half_of(self.id)


@dataclass(frozen=True)
class Conversation:
    id: str
    lang: str
    kind: str  # follow-up, topic-change, three-turn
    turns: tuple[Turn, ...] = field(default_factory=tuple)
    origin: str = ""

    @property
    def half(self) -> str:
        return half_of(self.id)


def source_name(document: str) -> str:
    """Probe files name sample documents "docs/area/file" and manuals "manual/file"."""
    return document.removeprefix("docs/")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def passage_probes() -> list[Probe]:
    """Every single-question probe with a gold passage: the golden sets and the manuals' probes."""
    out = []
    for path in [*GOLDEN, *sorted(p for p in PROBES.glob("*.jsonl") if "conversations" not in p.name)]:
        for raw in _lines(path):
            origin = "golden" if path in GOLDEN else path.stem
            out.append(Probe(raw["id"], raw["lang"], raw["question"], source_name(raw["document"]),
                             raw["passage"], raw["answer"], origin))
    return out


def conversations() -> list[Conversation]:
    out = []
    for path in sorted(PROBES.glob("*conversations.jsonl")):
        for raw in _lines(path):
            turns = tuple(Turn(t["question"], source_name(t["document"]), t["passage"], t["answer"])
                          for t in raw["turns"])
            out.append(Conversation(raw["id"], raw["lang"], raw["kind"], turns, path.stem))
    return out


def unanswerable() -> list[dict]:
    return _lines(UNANSWERABLE)


def _normalized(text: str) -> str:
    text = plain(text).replace("·", " ").replace(";", " ")
    return re.sub(r"\s+", " ", text).strip().lower()


def holds(chunk_text: str, passage: str) -> bool:
    """Whether a chunk holds the gold passage: verbatim after markup and spacing are normalised,
    or (PDF line breaks, spreadsheet rows written as "Header: value") 80% of its content units."""
    if _normalized(passage) in _normalized(chunk_text):
        return True
    units = content_units(plain(passage))
    if len(units) < 3:
        return False
    present = set(content_units(plain(chunk_text)))
    return sum(1 for u in units if u in present) / len(units) >= 0.8


def corpus_fingerprint() -> str:
    digest = hashlib.sha256()
    for root in CORPUS_ROOTS:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def open_corpus(data_dir: Path, embedder_path: Path, **knowledge) -> KnowledgeBase:
    """A knowledge base over the corpus in `data_dir` (ingested on first use, kept after)."""
    settings = load_settings(data_dir=data_dir)
    settings.knowledge.embedder_path = str(embedder_path)
    settings.knowledge.ingest_sample_on_first_start = False
    for key, value in knowledge.items():
        setattr(settings.knowledge, key, value)
    kb = KnowledgeBase.open(settings)
    if kb.store.meta("corpus") != corpus_fingerprint():
        report = kb.ingest(list(CORPUS_ROOTS))
        if report.failed:
            raise SystemExit(f"corpus documents failed to ingest: {report.failed}")
        kb.store.set_meta("corpus", corpus_fingerprint())
    return kb
