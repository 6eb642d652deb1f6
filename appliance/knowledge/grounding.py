"""Grounded prompts: numbered sources inside the context budget, and the honest no-answer reply."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from appliance.knowledge.analyzer import is_korean
from appliance.knowledge.retrieval import Hit

INSTRUCTIONS = (
    "You are the company's ERP help assistant. Answer the question using only the numbered "
    "sources below, and cite the sources you use like [1] or [2]. If the sources do not contain "
    "the answer, say that you do not know. Answer in the language of the question."
)
NO_ANSWER = {
    "en": "I could not find anything about this in the knowledge base, so I cannot answer it "
          "reliably. Try rephrasing the question, or ask your ERP administrator to add a "
          "document that covers it.",
    "ko": "지식 베이스에서 이 질문과 관련된 내용을 찾지 못해 정확히 답변드릴 수 없습니다. 질문을 "
          "다르게 표현해 보시거나, ERP 관리자에게 관련 문서 등록을 요청해 주세요.",
}
_PER_MESSAGE_TOKENS = 8  # chat template markers around each message
_MIN_SOURCE_TOKENS = 48  # a source cut shorter than this says too little to cite


def question_of(messages: Sequence[dict[str, str]]) -> str:
    """The text retrieval runs on: the last user message."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def no_answer(question: str) -> str:
    return NO_ANSWER["ko" if is_korean(question) else "en"]


def _label(hit: Hit) -> str:
    where = " > ".join(p for p in (hit.title, hit.heading) if p)
    if hit.page:
        where += f" (page {hit.page})"
    elif hit.sheet:
        where += f" (sheet {hit.sheet})"
    return where


def grounded_messages(messages: Sequence[dict[str, str]], hits: Sequence[Hit], *, budget: int,
                      count: Callable[[str], int]) -> tuple[list[dict[str, str]], list[Hit]]:
    """Messages with a system prompt holding as many sources as fit in `budget` tokens.

    Returns the messages and the hits actually included (their order gives the numbers).
    """
    system = [m["content"] for m in messages if m["role"] == "system"]
    conversation = [m for m in messages if m["role"] != "system"]
    head = "\n\n".join([*system, INSTRUCTIONS, "Sources:"])
    used = count(head) + sum(count(m["content"]) + _PER_MESSAGE_TOKENS for m in conversation)
    used += _PER_MESSAGE_TOKENS
    blocks: list[str] = []
    included: list[Hit] = []
    for hit in hits:
        block = f"[{len(included) + 1}] {_label(hit)}\n{hit.text}"
        cost = count(block) + 2
        if used + cost > budget:
            room = budget - used - count(f"[{len(included) + 1}] {_label(hit)}\n") - 2
            if room < _MIN_SOURCE_TOKENS:
                break
            # Cut the text to the room left, by its share of tokens (a close enough estimate).
            keep = int(len(hit.text) * room / max(count(hit.text), 1) * 0.9)
            block = f"[{len(included) + 1}] {_label(hit)}\n{hit.text[:keep]}…"
            cost = count(block) + 2
        blocks.append(block)
        included.append(hit)
        used += cost
    prompt = head + "\n\n" + "\n\n".join(blocks)
    return [{"role": "system", "content": prompt}, *conversation], included
