"""Clean stage: Unicode NFKC, whitespace, PII masking, exact and near-duplicate removal, with counts."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

# Order matters: a resident registration number or a card number would also match the phone pattern.
PII_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")),
    ("rrn", re.compile(r"(?<!\d)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[- ]?[1-8]\d{6}(?!\d)")),
    ("card", re.compile(r"(?<!\d)(?:\d{4}[- ]){3}\d{4}(?!\d)|(?<!\d)\d{16}(?!\d)")),
    ("phone", re.compile(
        r"(?<![\w\d])(?:\+82[- ]?(?:\(0\))?|0)(?:1[016789]|2|[3-6][1-5]|70|50\d?)[- .)]?\d{3,4}[- .]?\d{4}(?!\d)"
        r"|(?<![\w\d])\+\d{1,3}[- ]\d{1,4}[- ]\d{3,4}[- ]\d{3,4}(?!\d)"
    )),
]
MASKS = {"email": "[EMAIL]", "rrn": "[RRN]", "card": "[CARD]", "phone": "[PHONE]"}


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def mask_pii(text: str, counts: Counter) -> str:
    for kind, pattern in PII_PATTERNS:
        text, n = pattern.subn(MASKS[kind], text)
        counts[kind] += n
    return text


def _shingles(text: str, size: int) -> set[str]:
    compact = re.sub(r"\s+", " ", text.lower())
    return {compact[i:i + size] for i in range(max(1, len(compact) - size + 1))}


def clean(records: list[dict[str, Any]], *, near_threshold: float, shingle_size: int) -> tuple[list[dict], dict]:
    """Cleaned records and a report: PII counts, exact and near duplicates dropped."""
    pii: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    kept: list[dict[str, Any]] = []
    exact = 0
    for record in records:
        question = mask_pii(normalize(record["question"]), pii)
        answer = mask_pii(normalize(record["answer"]), pii)
        key = (question.lower(), answer.lower())
        if key in seen:
            exact += 1
            continue
        seen.add(key)
        cleaned = {**record, "question": question, "answer": answer}
        if record.get("history"):
            # Earlier turns are records of their own too: masked here, counted there.
            cleaned["history"] = [{**m, "content": mask_pii(normalize(m["content"]), Counter())}
                                  for m in record["history"]]
        kept.append(cleaned)

    # Near duplicates: Jaccard over character shingles, bucketed by length so the quadratic
    # comparison only runs between texts that could reach the threshold.
    signatures = [_shingles(r["question"] + "\n" + r["answer"], shingle_size) for r in kept]
    order = sorted(range(len(kept)), key=lambda i: len(signatures[i]))
    dropped: set[int] = set()
    near_examples = []
    for pos, i in enumerate(order):
        if i in dropped:
            continue
        for j in order[pos + 1:]:
            if len(signatures[i]) < near_threshold * len(signatures[j]):
                break
            if j in dropped:
                continue
            inter = len(signatures[i] & signatures[j])
            if inter / (len(signatures[i]) + len(signatures[j]) - inter) >= near_threshold:
                dropped.add(j)
                if len(near_examples) < 10:
                    near_examples.append({"kept": kept[i]["question"][:80], "dropped": kept[j]["question"][:80]})
    result = [r for i, r in enumerate(kept) if i not in dropped]
    report = {
        "input": len(records),
        "output": len(result),
        "exact_duplicates": exact,
        "near_duplicates": len(dropped),
        "near_duplicate_examples": near_examples,
        "pii_masked": {kind: pii[kind] for kind in MASKS},
    }
    return result, report
