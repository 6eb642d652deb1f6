"""Embedder adaptation stage: the sentence-transformers embedder fine-tuned contrastively on
(question, passage) pairs from the train split, kept only if it retrieves eval-split passages better
than the base.

Pairs: a document section's heading (alone, and under its title) -> the section as the knowledge
base embeds it; a QA question -> its answer and -> the best-matching section of its source
document; a chat user turn -> the assistant's reply. Augmented question variants are left out.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from appliance_build.cleaning import mask_pii, normalize
from appliance_build.metrics import rank_metrics, tokens

console = Console(stderr=True)

# A QA answer is tied to a section of its source document only when the section holds at least
# this share of the answer's tokens; below it the answer is a paraphrase we cannot place.
MIN_ANSWER_IN_SECTION = 0.5
_NUMBERING = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[가-하]\.)\s+")


@dataclass(frozen=True)
class Pair:
    query: str
    passage: str
    kind: str  # heading, heading_path, qa, qa_section, chat
    group: str  # the split group (source document or conversation) it came from


def passage_text(record: dict[str, Any]) -> str:
    """What the knowledge base embeds for a document section ("title > headings" then the text);
    the answer itself for QA and chat rows."""
    if record["kind"] == "doc":
        where = record.get("where") or record.get("heading") or ""
        return f"{where}\n{record['answer']}" if where else record["answer"]
    return record["answer"]


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _clean_heading(text: str) -> str:
    # Headings are not PII-masked by the clean stage (only questions and answers are).
    return mask_pii(normalize(_NUMBERING.sub("", text)), Counter()).strip()


def build_pairs(records: list[dict[str, Any]]) -> list[Pair]:
    """(query, passage) pairs from one split's records, deduplicated, in record order."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["kind"] == "doc":
            sections.setdefault(record["group"], []).append(record)
    pairs: list[Pair] = []
    for record in records:
        if "augmented" in record.get("tags", ()):
            continue
        kind, group = record["kind"], record["group"]
        if kind == "doc":
            passage = passage_text(record)
            heading = _clean_heading(record.get("heading") or "")
            where = _clean_heading(record.get("where") or "")
            if len(heading) > 1:
                pairs.append(Pair(heading, passage, "heading", group))
            if where and where != heading:
                pairs.append(Pair(where, passage, "heading_path", group))
        elif kind == "qa":
            pairs.append(Pair(record["question"], record["answer"], "qa", group))
            section = best_section(record["answer"], sections.get(group, []))
            if section is not None:
                pairs.append(Pair(record["question"], passage_text(section), "qa_section", group))
        elif kind == "chat":
            pairs.append(Pair(record["question"], record["answer"], "chat", group))
    seen: set[tuple[str, str]] = set()
    unique = []
    for pair in pairs:
        if pair.query.strip() and pair.passage.strip() and (pair.query, pair.passage) not in seen:
            seen.add((pair.query, pair.passage))
            unique.append(pair)
    return unique


def best_section(answer: str, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The section of the source document that holds most of the answer's tokens, if enough."""
    wanted = Counter(tokens(answer))
    if not wanted or not candidates:
        return None
    total = sum(wanted.values())
    scored = [(sum((wanted & Counter(tokens(c["answer"]))).values()) / total, i) for i, c in enumerate(candidates)]
    share, index = max(scored)
    return candidates[index] if share >= MIN_ANSWER_IN_SECTION else None


def remove_overlap(eval_pairs: list[Pair], train_pairs: list[Pair]) -> tuple[list[Pair], int]:
    """Eval pairs whose query or passage also occurs in training are dropped (and counted)."""
    seen = {_key(p.query) for p in train_pairs} | {_key(p.passage) for p in train_pairs}
    kept = [p for p in eval_pairs if _key(p.query) not in seen and _key(p.passage) not in seen]
    return kept, len(eval_pairs) - len(kept)


@dataclass
class RetrievalSet:
    """Queries, the passages to search, and for each query the indices of its gold passages."""

    name: str
    queries: list[str]
    passages: list[str]
    gold: list[set[int]]
    kinds: list[str]

    def describe(self) -> dict[str, Any]:
        return {"queries": len(self.queries), "passages": len(self.passages),
                "by_kind": dict(Counter(self.kinds))}


def pair_set(pairs: list[Pair]) -> RetrievalSet:
    """Each distinct query against every distinct passage of the pairs; its gold is all of its passages."""
    passages = list(dict.fromkeys(p.passage for p in pairs))
    index = {text: i for i, text in enumerate(passages)}
    gold: dict[str, set[int]] = {}
    kinds: dict[str, str] = {}
    for pair in pairs:
        gold.setdefault(pair.query, set()).add(index[pair.passage])
        kinds.setdefault(pair.query, pair.kind)
    queries = list(gold)
    return RetrievalSet("eval pairs", queries, passages, [gold[q] for q in queries], [kinds[q] for q in queries])


def probe_set(probes: list[dict[str, Any]], sections: list[dict[str, Any]],
              train_pairs: list[Pair]) -> tuple[RetrievalSet | None, dict[str, int]]:
    """KB probes (question -> gold document) over every KB section; probes seen in training are left out."""
    trained = {_key(p.query) for p in train_pairs}
    passages = [passage_text(r) for r in sections]
    by_doc: dict[str, set[int]] = {}
    for i, record in enumerate(sections):
        by_doc.setdefault(record.get("doc_path", ""), set()).add(i)
    counts = {"probes": len(probes), "in_training": 0, "gold_not_in_corpus": 0}
    queries, gold, kinds = [], [], []
    for probe in probes:
        if _key(probe["question"]) in trained:
            counts["in_training"] += 1
        elif probe["gold"] not in by_doc:
            counts["gold_not_in_corpus"] += 1
        else:
            queries.append(probe["question"])
            gold.append(by_doc[probe["gold"]])
            kinds.append(probe.get("lang") or "probe")
    if not queries:
        return None, counts
    return RetrievalSet("kb probes", queries, passages, gold, kinds), counts


def measure(model, retrieval: RetrievalSet, k: int, batch_size: int = 32) -> dict[str, Any]:
    """recall@1, recall@k and MRR of a sentence-transformers model on one retrieval set, per query kind too."""
    queries = model.encode(retrieval.queries, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    passages = model.encode(retrieval.passages, batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=len(retrieval.passages) > 256)
    result = rank_metrics(queries, passages, retrieval.gold, ks=sorted({1, k}))
    kinds = np.array(retrieval.kinds)
    by_kind = {}
    for kind in sorted(set(retrieval.kinds)):
        picked = np.flatnonzero(kinds == kind)
        by_kind[kind] = rank_metrics(queries[picked], passages, [retrieval.gold[i] for i in picked], ks=[k])
    return {**result, "by_kind": by_kind}


def gate(base: dict[str, Any], adapted: dict[str, Any], k: int, min_gain: float) -> tuple[bool, str]:
    """Keep the adapted embedder only if its recall@k on the eval pairs beats the base's by `min_gain`."""
    metric = f"recall@{k}"
    gain = adapted[metric] - base[metric]
    verdict = ("adapted embedder kept" if gain >= min_gain else "base embedder kept: the adapted one is not "
               "better by the required margin")
    reason = (f"eval-pair {metric} {adapted[metric]:.3f} adapted vs {base[metric]:.3f} base "
              f"({gain:+.3f}, required {min_gain:+.3f}; MRR {adapted['mrr']:.3f} vs {base['mrr']:.3f}): {verdict}")
    return gain >= min_gain, reason


def train(model, pairs: list[Pair], cfg: dict[str, Any], out: Path, seed: int) -> dict[str, Any]:
    """MultipleNegativesRankingLoss (in-batch negatives) over the pairs with the sentence-transformers trainer."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses

    if cfg["loss"] == "mnrl":
        loss = losses.MultipleNegativesRankingLoss(model)
    else:
        # Gradient caching: the same in-batch negatives as mnrl at a fraction of the activation memory.
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg["mini_batch_size"])
    dataset = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.passage for p in pairs]})
    cuda = torch.cuda.is_available()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg["epochs"],
        max_steps=cfg["max_steps"],
        per_device_train_batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"],
        warmup_ratio=cfg["warmup_ratio"],
        weight_decay=0.01,
        # A passage twice in one batch would be its own in-batch negative.
        batch_sampler="no_duplicates",
        seed=seed,
        data_seed=seed,
        fp16=cuda,
        logging_steps=max(1, cfg["logging_steps"]),
        save_strategy="no",
        report_to=[],
        disable_tqdm=False,
        dataloader_num_workers=0,
        use_cpu=not cuda,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    result = trainer.train()
    return {"steps": trainer.state.global_step, "train_loss": result.metrics.get("train_loss"),
            "train_runtime_s": result.metrics.get("train_runtime"), "fp16": cuda,
            "loss_history": [row["loss"] for row in trainer.state.log_history if "loss" in row]}


def adapt_embedder(base_dir: Path, train_records: list[dict[str, Any]], eval_records: list[dict[str, Any]],
                   kb_sections: list[dict[str, Any]], probes: list[dict[str, Any]], cfg: dict[str, Any],
                   out: Path, seed: int, serve_max_length: int) -> dict[str, Any]:
    """Train on the train split's pairs, measure base and adapted on the eval pairs and the KB probes
    (truncating as the appliance does, at `serve_max_length` tokens), and gate."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import set_seed

    all_train_pairs = build_pairs(train_records)
    train_pairs = all_train_pairs
    if cfg["max_pairs"] and len(train_pairs) > cfg["max_pairs"]:
        train_pairs = random.Random(seed).sample(train_pairs, cfg["max_pairs"])
    # Held-out checks exclude anything from the whole train split, sampled into training or not.
    eval_pairs, overlapping = remove_overlap(build_pairs(eval_records), all_train_pairs)
    evaluation = pair_set(eval_pairs)
    probing, probe_counts = probe_set(probes, kb_sections, all_train_pairs)
    summary: dict[str, Any] = {
        "base_dir": str(base_dir),
        "train_pairs": len(train_pairs),
        "train_pairs_available": len(all_train_pairs),
        "train_pairs_by_kind": dict(Counter(p.kind for p in train_pairs)),
        "eval_pairs": len(eval_pairs),
        "eval_pairs_dropped_as_seen_in_training": overlapping,
        "eval_set": evaluation.describe(),
        "probe_set": {**(probing.describe() if probing else {}), **probe_counts},
        "k": cfg["recall_k"],
        "min_recall_gain": cfg["min_recall_gain"],
    }
    _write_pairs(out / "pairs", train_pairs, eval_pairs)
    if not train_pairs or not evaluation.queries:
        # Without held-out pairs nothing could show the adapted embedder is better, so none is trained.
        missing = "no training pairs in the train split" if not train_pairs else "no held-out eval pairs"
        return {**summary, "kept": "base", "model_dir": str(base_dir), "reason": f"{missing}: base embedder kept"}

    set_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(str(base_dir), device=device)
    model.max_seq_length = serve_max_length
    k = cfg["recall_k"]
    sets = [evaluation] + ([probing] if probing else [])
    figures: dict[str, dict[str, Any]] = {"base": {}, "adapted": {}}
    for retrieval in sets:
        console.print(f"base embedder on {retrieval.name}: {len(retrieval.queries)} queries, "
                      f"{len(retrieval.passages)} passages")
        figures["base"][retrieval.name] = measure(model, retrieval, k)
    console.print(f"adapting the embedder on {len(train_pairs)} pairs ({cfg['loss']}, batch {cfg['batch_size']})")
    model.max_seq_length = cfg["max_length"]
    summary["training"] = train(model, train_pairs, cfg, out, seed)
    model.max_seq_length = serve_max_length
    adapted_dir = out / "model"
    model.save(str(adapted_dir))
    for retrieval in sets:
        console.print(f"adapted embedder on {retrieval.name}")
        figures["adapted"][retrieval.name] = measure(model, retrieval, k)
    summary["recall"] = figures
    keep, reason = gate(figures["base"][evaluation.name], figures["adapted"][evaluation.name], k,
                        cfg["min_recall_gain"])
    console.print(f"[bold]{reason}")
    return {**summary, "kept": "adapted" if keep else "base", "reason": reason,
            "adapted_dir": str(adapted_dir), "model_dir": str(adapted_dir if keep else base_dir)}


def _write_pairs(folder: Path, train_pairs: list[Pair], eval_pairs: list[Pair]) -> None:
    from appliance_build import jsonl

    folder.mkdir(parents=True, exist_ok=True)
    jsonl.write(folder / "train.jsonl", [asdict(p) for p in train_pairs])
    jsonl.write(folder / "eval.jsonl", [asdict(p) for p in eval_pairs])
