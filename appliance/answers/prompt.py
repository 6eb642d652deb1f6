"""The prompt a model writes a grounded answer from: the selected evidence, not whole passages."""

from __future__ import annotations

from collections.abc import Sequence

from appliance.answers.compose import lead_line, render_quote
from appliance.answers.evidence import Evidence

INSTRUCTIONS = {
    "en": ("You are the company's ERP help assistant. Answer the employee's question in English "
           "in one to three sentences, using only the numbered sources. Copy codes, numbers, "
           "amounts and names exactly as the sources write them, and cite the source after each "
           "sentence like [1]. Do not repeat the question."),
    "ko": ("당신은 회사 ERP 도우미입니다. 번호가 붙은 자료만 근거로 직원의 질문에 한국어로 한두 문장으로 "
           "답하세요. 코드, 숫자, 금액, 이름은 자료에 적힌 그대로 쓰고, 문장마다 끝에 [1]처럼 출처 번호를 "
           "붙이세요. 질문을 되풀이하지 마세요."),
}
HISTORY_TURNS = 2  # earlier messages kept for a follow-up: a small model loses its way in more


def evidence_block(evidence: Evidence) -> str:
    blocks = []
    for quote in evidence.quotes:
        number = quote.source + 1
        blocks.append(f"[{number}] {lead_line(evidence, quote)}\n" + "\n".join(render_quote(quote, number)))
    return "\n\n".join(blocks)


def evidence_messages(messages: Sequence[dict[str, str]], evidence: Evidence) -> list[dict[str, str]]:
    """A system prompt with the instructions and the evidence, then the recent conversation."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    conversation = [m for m in messages if m["role"] != "system"][-(2 * HISTORY_TURNS - 1):]
    language = "ko" if evidence.korean else "en"
    head = "\n\n".join([*system, INSTRUCTIONS[language], "Sources:", evidence_block(evidence)])
    return [{"role": "system", "content": head}, *conversation]
