"""Augment stage: seeded question variants (templates, casing, punctuation); augmented rows are tagged."""

from __future__ import annotations

import random
import re
from typing import Any

EN_PREFIXES = ["Could you tell me: ", "Quick question: ", "I need help. ", "Please explain: "]
KO_PREFIXES = ["질문이 있습니다. ", "알려 주세요: ", "궁금한 점이 있어요. ", "도와주세요. "]
KO_SUFFIXES = [" 알려주실 수 있나요?", " 방법이 궁금합니다.", ""]


def is_korean(text: str) -> bool:
    return bool(re.search(r"[\uac00-\ud7a3]", text))


def variant(question: str, rng: random.Random) -> str:
    if is_korean(question):
        return rng.choice(KO_PREFIXES) + question.rstrip() + rng.choice(KO_SUFFIXES)
    body = question[0].lower() + question[1:] if question[:1].isupper() and question[1:2].islower() else question
    choice = rng.random()
    if choice < 0.5:
        return rng.choice(EN_PREFIXES) + body
    if choice < 0.8:
        return question.rstrip("?.! ") + "?"
    return body.rstrip("?") + ", please?"


def augment(records: list[dict[str, Any]], *, seed: int, variants: int) -> tuple[list[dict], dict]:
    """Originals plus `variants` tagged variants of each chat/QA question (documents are not varied)."""
    rng = random.Random(seed)
    out = list(records)
    added = 0
    for record in records:
        if record["kind"] == "doc":
            continue
        seen = {record["question"]}
        for _ in range(variants):
            question = variant(record["question"], rng)
            if question in seen:
                continue
            seen.add(question)
            out.append({**record, "question": question, "tags": [*record["tags"], "augmented"]})
            added += 1
    return out, {"input": len(records), "augmented": added, "output": len(out), "seed": seed}
