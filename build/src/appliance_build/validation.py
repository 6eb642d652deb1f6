"""Validate stage: schema, length against the context, language, empty answers, and a grouped split.

The train/eval split is by group (a conversation, a source document, a QA source), so no
conversation or document contributes to both sides; augmented rows follow their original.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

REQUIRED = {"kind": str, "source": str, "group": str, "question": str, "answer": str, "tags": list}


def language(text: str) -> str:
    hangul = len(re.findall(r"[\uac00-\ud7a3]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    if hangul + latin == 0:
        return "unknown"
    return "ko" if hangul >= 0.2 * (hangul + latin) else "en"


def _group_rank(group: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def validate(
    records: list[dict[str, Any]],
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    min_answer_chars: int,
    languages: list[str],
    eval_fraction: float,
    seed: int,
) -> tuple[list[dict], list[dict], dict]:
    """(train, eval, report); the report lists every drop with its reason."""
    drops: Counter = Counter()
    examples: list[dict[str, Any]] = []
    kept = []

    def drop(record: dict[str, Any], reason: str) -> None:
        drops[reason] += 1
        if len(examples) < 30:
            examples.append({"reason": reason, "source": record.get("source"), "line": record.get("line"),
                             "question": str(record.get("question", ""))[:80]})

    for record in records:
        bad = [k for k, t in REQUIRED.items() if not isinstance(record.get(k), t)]
        if bad:
            drop(record, f"schema: missing or wrong type for {', '.join(bad)}")
            continue
        if not record["question"].strip():
            drop(record, "empty question")
            continue
        if len(record["answer"].strip()) < min_answer_chars:
            drop(record, "empty answer")
            continue
        lang = language(record["question"] + " " + record["answer"])
        if lang not in languages:
            drop(record, f"language {lang} not in {languages}")
            continue
        tokens = count_tokens(record["question"]) + count_tokens(record["answer"])
        if tokens > max_tokens:
            drop(record, f"too long: more than {max_tokens} tokens")
            continue
        kept.append({**record, "lang": lang, "tokens": tokens})

    groups = sorted({r["group"] for r in kept}, key=lambda g: _group_rank(g, seed))
    n_eval = min(len(groups) - 1, max(1, math.ceil(eval_fraction * len(groups)))) if len(groups) > 1 else 0
    eval_groups = set(groups[:n_eval])
    train = [r for r in kept if r["group"] not in eval_groups]
    evaluation = [r for r in kept if r["group"] in eval_groups]

    # Different groups can still share an answer verbatim (a policy quoted in a chat and a QA row):
    # such eval rows would measure memorisation, so they go.
    train_answers = {r["answer"].lower() for r in train}
    leaked = [r for r in evaluation if r["answer"].lower() in train_answers]
    for record in leaked:
        drop(record, "leakage: eval answer also in train")
    evaluation = [r for r in evaluation if r["answer"].lower() not in train_answers]

    report = {
        "input": len(records),
        "train": len(train),
        "eval": len(evaluation),
        "train_groups": len({r["group"] for r in train}),
        "eval_groups": len({r["group"] for r in evaluation}),
        "shared_groups": len({r["group"] for r in train} & {r["group"] for r in evaluation}),
        "dropped": dict(drops),
        "drop_examples": examples,
        "languages": dict(Counter(r["lang"] for r in kept)),
    }
    return train, evaluation, report
