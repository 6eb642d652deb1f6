"""Answer-quality and retrieval metrics that can fail: token F1 and recall@k."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np


def tokens(text: str) -> list[str]:
    # Hangul words carry particles (을/를/은/는); character bigrams make F1 fair to Korean answers.
    out = []
    for word in re.findall(r"\w+", text.lower()):
        if re.search(r"[\uac00-\ud7a3]", word) and len(word) > 1:
            out.extend(word[i:i + 2] for i in range(len(word) - 1))
        else:
            out.append(word)
    return out


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def recall_at_k(query_vectors: np.ndarray, doc_vectors: np.ndarray, doc_sources: list[str],
                gold: list[str], k: int) -> float:
    """Share of queries whose gold document is among the sources of the top-k passages."""
    if not len(gold):
        return 0.0
    scores = query_vectors @ doc_vectors.T
    hits = 0
    for row, target in zip(scores, gold):
        top = np.argsort(-row)[:k]
        hits += any(doc_sources[i] == target for i in top)
    return hits / len(gold)


def rank_metrics(query_vectors: np.ndarray, passage_vectors: np.ndarray, gold: list[set[int]],
                 ks: list[int]) -> dict[str, float]:
    """recall@k (share of queries with a gold passage in the top k) and MRR (mean of 1 / rank of the
    first gold passage) over cosine-ranked passages; vectors are unit length."""
    if not gold:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0}
    scores = query_vectors @ passage_vectors.T
    ranks = []
    for row, wanted in zip(scores, gold):
        order = np.argsort(-row, kind="stable")
        ranks.append(int(np.flatnonzero(np.isin(order, sorted(wanted)))[0]) + 1)
    first = np.array(ranks)
    return {**{f"recall@{k}": float((first <= k).mean()) for k in ks}, "mrr": float((1.0 / first).mean())}
