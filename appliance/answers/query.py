"""The retrieval query of a conversation: the last question, completed from earlier turns when it
does not stand alone ("And who approves it?", "한도는요?", "취소하려면요?").

Decided without a model: a follow-up is short, leans on a pronoun or an ellipsis, or names no
term of its own; a question that announces a new topic, or brings enough terms of its own, stands
alone and must not drag the old topic along.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from appliance.knowledge.analyzer import Analyzer, is_korean

_EN_REFERENCE = re.compile(
    r"\b(it|its|it's|that|this|these|those|they|them|their|there|then|same|such|one|ones|above|"
    r"former|latter)\b|^(and|but|so|also|what about|how about|and what|and how|and who|and when|"
    r"what if|if so|in that case)\b", re.I)
_KO_REFERENCE = re.compile(
    r"^(그럼|그러면|그렇다면|그건|그거|그것|그게|그걸|그때|그리고|또|이건|이거|이것|이게|저건|저거|거기|여기|그쪽|"
    r"근데|그런데|아까|위의?|방금)|(그|이|저|해당)\s?(것|거|건|게|때|문서|절차|경우|양식|화면|코드|항목|기준)|"
    r"(은|는|이|가|도|만|려면|으면|면|는데|인데)요\??$")
_NEW_TOPIC = re.compile(
    r"^(now|next|another (question|thing)|different (question|topic)|unrelated|separately|also, "
    r"a different|on another note)\b|^(그리고 )?(다른 (건데|질문|얘기|이야기)|별개로|새로운 질문|"
    r"주제를 바꿔|그건 그렇고)", re.I)
# Words that carry no topic of their own in a question.
_GENERIC = frozenset(
    "how what who when where which why can do does need approve approval cancel change limit "
    "deadline long much many time day days form contact happen reject rejected pay paid cost "
    "process step steps procedure rule rules allowed possible required".split()
) | frozenset("하다 되다 있다 없다 어떻다 누구 언제 어디 얼마 며칠 승인 취소 변경 한도 기간 방법 절차 "
              "양식 문의 문의처 담당 담당자 신청 처리 가능 필요 경우 반려 기한 마감".split())
MIN_OWN_TERMS = 2  # a question with fewer specific terms leans on the conversation
LAST_TURN_WEIGHT = 2  # the last question counts this many times against each earlier one


@dataclass(frozen=True)
class RetrievalQuery:
    text: str  # what the keyword index and the embedder see
    question: str  # the last user message
    earlier: tuple[str, ...] = field(default_factory=tuple)  # earlier user turns used, newest first
    previous_answer: str = ""  # the answer before a follow-up: the documents it cited stay candidates
    leaning: bool = False  # read with the conversation only because it found no answer alone

    @property
    def carried(self) -> bool:
        return bool(self.earlier)

    @property
    def shown(self) -> str:
        """What was searched, as a person reads it: each turn once, oldest first."""
        return " ".join([*reversed(self.earlier), self.question])

    def as_dict(self) -> dict:
        return {"text": self.text, "question": self.question, "carried_from": list(self.earlier)}


def user_turns(messages: Sequence[dict[str, str]]) -> list[str]:
    return [m["content"] for m in messages if m.get("role") == "user" and m.get("content")]


def question_of(messages: Sequence[dict[str, str]]) -> str:
    """The last user message."""
    turns = user_turns(messages)
    return turns[-1] if turns else ""


def stands_alone(question: str, analyzer: Analyzer) -> bool:
    """Whether a question can be searched without the conversation before it."""
    text = question.strip()
    if _NEW_TOPIC.search(text):
        return True
    korean = is_korean(text)
    if (_KO_REFERENCE if korean else _EN_REFERENCE).search(text):
        return False
    own = [t for t in analyzer.terms(text) if t not in _GENERIC and len(t) > 1]
    return len(set(own)) >= MIN_OWN_TERMS


def conversation_query(messages: Sequence[dict[str, str]], analyzer: Analyzer, *,
                       max_earlier: int = 2, lean: bool = False) -> RetrievalQuery:
    """The query for the last user message of `messages`. `lean`: read the question with the
    conversation even though it names terms of its own (it could not be answered alone), unless
    it announces a new topic."""
    turns = user_turns(messages)
    if not turns:
        return RetrievalQuery("", "")
    question = turns[-1]
    if len(turns) == 1 or (_NEW_TOPIC.search(question.strip()) if lean
                           else stands_alone(question, analyzer)):
        return RetrievalQuery(question, question)
    earlier: list[str] = []
    for turn in reversed(turns[:-1]):
        earlier.append(turn)
        # Walk back to the turn that set the topic: one that stood on its own.
        if len(earlier) >= max_earlier or stands_alone(turn, analyzer):
            break
    text = " ".join([*reversed(earlier), *([question] * LAST_TURN_WEIGHT)])
    previous = next((m.get("content") or "" for m in reversed(messages[:-1])
                     if m.get("role") == "assistant"), "")
    return RetrievalQuery(text, question, tuple(earlier), previous, leaning=lean)
