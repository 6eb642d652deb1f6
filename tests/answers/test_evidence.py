import pytest

from appliance.answers.compose import compose, no_answer
from appliance.answers.spans import HEADER, ROW, STEP
from appliance.knowledge.glossary import Glossary
from appliance.knowledge.retrieval import Hit

from .conftest import hit


def _selector(analyzer, passages: dict, *, others=(), **options):
    """An evidence selector whose term weights come from `passages` (chunk id -> (title,
    heading, text)) and from `others` (more texts of the corpus)."""
    from appliance.answers.evidence import EvidenceSelector
    from appliance.knowledge.keyword import KeywordIndex

    index = KeywordIndex()
    for chunk_id, (title, heading, text) in passages.items():
        index.add(chunk_id, analyzer.terms(f"{title} {heading}\n{text}"))
    for chunk_id, text in enumerate(others, start=1000):
        index.add(chunk_id, analyzer.terms(text))
    return EvidenceSelector(analyzer, idf=index.idf, unseen_idf=index.unseen_idf, **options)


def _hits(passages: dict, *ids: int, suffix: str = "md") -> list[Hit]:
    """Search hits for `ids` (all passages when none), in that order."""
    return [Hit(i, i, f"doc{i}.{suffix}", *passages[i][:2], None, None, passages[i][2], 1.0, None, None, 1.0)
            for i in (ids or passages)]


def test_a_table_row_answer_brings_its_header(selector):
    evidence = selector.select("Who approves a purchase order of 60 million won?", [hit(4), hit(1), hit(2)])
    assert evidence.answers(0.2)
    first = evidence.quotes[0]
    assert evidence.sources[first.source].chunk_id == 1
    kinds = [s.kind for s in first.spans]
    assert HEADER in kinds and ROW in kinds
    assert any("CFO" in s.text for s in first.spans)


def test_a_procedure_question_gets_the_whole_numbered_list_in_order(selector):
    evidence = selector.select("How do I release a purchase order?", [hit(2), hit(1)])
    steps = [s for q in evidence.quotes for s in q.spans if s.kind == STEP]
    assert [s.number for s in steps] == ["1", "2", "3"]


def test_korean_question_finds_the_korean_list_item(selector):
    evidence = selector.select("생산직도 반반차를 쓸 수 있나요?", [hit(1), hit(3)])
    assert evidence.answers(0.2)
    assert any("반반차" in text for text in evidence.texts())


def test_an_unrelated_question_is_not_answered(selector):
    evidence = selector.select("How do I book a meeting room for Thursday?", [hit(1), hit(2), hit(4)])
    assert not evidence.answers(0.2)


def test_the_extractive_answer_is_a_lead_line_and_quotes_with_citations(selector):
    evidence = selector.select("Who approves a purchase order of 60 million won?", [hit(1)])
    answer = compose(evidence)
    lines = answer.splitlines()
    assert lines[0] == "Purchase Order Approval › 3. Approval limits:"
    assert "| R3 | 30,000,001 – 150,000,000 | CFO |" in answer
    assert "[1]" in answer
    # No word but the lead line's is made up: every line after it is quoted from the passage.
    source = hit(1).text
    for line in lines[2:]:
        quoted = line.replace(" [1]", "").strip()
        assert quoted in source or quoted.strip("|").strip() in source or line.startswith("|---")


def test_a_korean_question_gets_a_korean_lead_line_and_quotes(selector):
    evidence = selector.select("연차는 언제까지 신청해야 하나요?", [hit(3)])
    answer = compose(evidence)
    assert answer.startswith("연차 휴가 신청 절차 › 2. 신청 방법:")
    assert "3영업일 전까지 HR100에서 신청한다" in answer


def test_the_no_answer_reply_speaks_the_question_language():
    assert no_answer("회의실 예약은?").startswith("지식 베이스에서")
    assert no_answer("Meeting rooms?").startswith("I could not find")


CARD_POLICY = {
    11: ("법인카드 발급 및 사용 규정", "", """## 1. 목적
이 규정은 법인카드의 발급, 사용, 정산, 분실 신고, 반납 기준을 정한다.
## 2. 카드 종류
· 개인 지정 법인카드: 특정 임직원에게 발급되며 본인만 사용할 수 있다."""),
    12: ("법인카드 발급 및 사용 규정", "7. 분실 및 도난", """· 카드를 분실하면 즉시 카드사 분실신고 센터에 신고하고, 재무팀(내선 2230)에도 당일 알린다.
· 재발급은 발급 신청서를 다시 제출한다."""),
    13: ("Business Travel Policy", "5. Settlement", "Corporate card payments made during the trip are included in TR200."),
}


def test_an_everyday_word_is_asked_in_the_manuals_word_and_its_section_answers(analyzer):
    selector = _selector(analyzer, CARD_POLICY, glossary=Glossary(analyzer), budget_tokens=200)
    question = "법인카드를 잃어버렸어요. 어떻게 해야 하나요?"
    own, _, _ = selector.question_weights(question)
    assert "분실" in own and "잃어버리다" not in own  # no passage says 잃어버리다; they say 분실
    evidence = selector.select(question, _hits(CARD_POLICY, 13, 11, 12, suffix="pdf"))
    assert evidence.answers(0.2)
    chosen = [h.chunk_id for h in evidence.sources]
    # The English row matches "법인카드" only through its translation: it may stand in for those
    # words, not for the loss the question is about, so the section on losing a card ranks first.
    assert 12 in chosen and (13 not in chosen or chosen.index(12) < chosen.index(13))
    assert "분실신고 센터에 신고" in compose(evidence)


TRAVEL = {
    21: ("Business Travel Policy", "2. Travel requests", """Travel requests are due with the signed approval form.
Travel requests are due five working days before departure."""),
    22: ("출장 규정", "2. 출장 신청", """출장 신청서는 팀장 결재 후 총무팀에 제출한다.
출장 신청서는 출발 3영업일 전까지 총무팀에 제출한다."""),
}



@pytest.mark.parametrize(("question", "chunk_id", "expected"), [
    ("How long before the trip are travel requests due?", 21, "five working days"),
    ("출장 신청서는 며칠 전까지 제출해야 하나요?", 22, "3영업일"),
])
def test_a_question_for_a_period_is_answered_by_the_sentence_that_states_one(
        analyzer, question, chunk_id, expected):
    # Both sentences share the question's words; only one says how long.
    selector = _selector(analyzer, TRAVEL, budget_tokens=60, max_quotes=1)
    evidence = selector.select(question, _hits(TRAVEL, chunk_id))
    assert evidence.answers(0.2)
    assert expected in evidence.texts()[0]


@pytest.mark.parametrize(("question", "kinds"), [
    ("How long does the approval take?", {"period", "time"}),
    ("반품 판정은 며칠 안에 나오나요?", {"period", "time"}),
    ("What time does the MRP run start?", {"time"}),
    ("소액 현금은 얼마까지 보관할 수 있어요?", {"amount"}),
    ("What's the smallest chargeback we can raise against a vendor?", {"amount"}),
    ("How often do role owners review their roles?", {"frequency"}),
    ("하루에 몇 장까지 뽑을 수 있어요?", {"count"}),
    ("현장 앱은 휴대폰 몇 대까지 등록할 수 있어요?", {"count"}),
    ("실사 차이 금액이 300만원이면 누가 승인해요?", set()),  # it states the amount and asks who
    ("How do I release a purchase order?", set()),
])
def test_what_a_question_asks_for(question, kinds):
    from appliance.answers.evidence import asked_kinds

    assert asked_kinds(question) == kinds


CARD_RULES = {
    23: ("Card transactions", "Unsubmitted transactions", """Card transactions left unsubmitted are listed on the card page.
Card transactions left unsubmitted for 90 days are deducted from the next salary."""),
    24: ("법인카드 정산", "4. 미정산 거래", """미정산 거래는 카드 화면의 미정산 목록에 표시된다.
미정산 거래가 3개월을 넘기면 카드 사용이 정지된다."""),
}


@pytest.mark.parametrize(("question", "chunk_id", "expected"), [
    ("What happens to card transactions left unsubmitted for three months?", 23, "90 days"),
    ("미정산 거래를 90일 넘게 두면 어떻게 되나요?", 24, "3개월"),
    ("미정산 거래를 100일 넘게 두면 어떻게 되나요?", 24, "3개월"),  # the rule for a period past it
])
def test_the_period_a_question_states_picks_the_sentence_that_states_it(
        analyzer, question, chunk_id, expected):
    # "three months" is "90 days": the sentence that states it (or the rule for a period the
    # question's falls under) wins over the one that shares the same words without it.
    from appliance.answers.evidence import stated_periods

    assert stated_periods("three months") == stated_periods("90일") == stated_periods("석 달") == {90}
    assert stated_periods("2024년 3월 30일") == set()  # a date is no period
    selector = _selector(analyzer, CARD_RULES, budget_tokens=30, max_quotes=1)
    evidence = selector.select(question, _hits(CARD_RULES, chunk_id))
    assert evidence.answers(0.2)
    assert expected in evidence.texts()[0]


STATUSES = {
    31: ("Quotations", "Quotation status", "- **Lost**: a rejection reason was entered; the status is final."),
    32: ("HR codes", "Attendance codes", "Code 04, unexcused absence: the attendance status is final."),
}


@pytest.mark.parametrize("topic", [31, 32])
def test_a_follow_up_keeps_to_the_documents_its_previous_answer_cited(analyzer, topic):
    # "Which status is final?" matches both passages alike: the documents the previous answer
    # cited decide.
    selector = _selector(analyzer, STATUSES, max_quotes=1)
    evidence = selector.select("Which status is final?", _hits(STATUSES),
                               topic=frozenset({f"doc{topic}.md"}))
    assert evidence.answers(0.2)
    assert [h.chunk_id for h in evidence.sources] == [topic]



ASSETS = {
    41: ("고정자산 기준", "5. 월 처리",
         "감가상각은 매월 FA300 배치 작업으로 실행한다. 장비를 취득한 달은 한 달 전체를 상각한다."),
    **{40 - n: ("장비 관리", f"{n}. 점검", f"장비는 달마다 {n}회 점검하고, 점검한 달의 기록을 남긴다.")
       for n in range(1, 6)},
}


def test_a_korean_answer_is_read_as_the_paragraph_it_quotes(analyzer):
    # The best sentence holds the question's rarest term (감가상각) and nothing else of it; the
    # sentence quoted with it holds two common ones (장비, 달): the quote answers the question,
    # though its best sentence alone matches one term.
    selector = _selector(analyzer, ASSETS)
    evidence = selector.select("이번 달에 산 장비도 감가상각이 한 달 치 다 잡히나요?",
                               _hits(ASSETS, 41, suffix="txt"))
    assert evidence.texts()[0].startswith("감가상각은")
    assert evidence.answers(0.2)
    assert "장비를 취득한 달은 한 달 전체를 상각한다." in evidence.texts()


def test_a_korean_question_is_answered_from_an_english_row_through_the_glossary(selector):
    # "출장" and "일비" (analysed as 일 + 비) are matched through their glossary entries
    # (business trip, per diem): each question term a translation stands in for counts.
    evidence = selector.select("출장 일비는 얼마인가요?", [hit(4), hit(3)])
    assert evidence.answers(0.2)
    assert evidence.sources[0].chunk_id == 4 and "KRW 40,000" in evidence.texts()[0]


def test_a_record_is_quoted_without_the_records_beside_it(analyzer):
    # Rows of a code list ("code: ...; area: ...") each say all they mean: the next error code
    # is no part of the answer.
    text = ("code: SYS-E-1020; area: Data lock; message_en: Record is being edited by another user; "
            "resolution: Wait until the other user leaves the document\n"
            "code: SYS-E-1042; area: Logon; message_en: Maximum number of sessions reached; "
            "resolution: Close unused browser tabs or log off other sessions\n"
            "code: SYS-E-2101; area: Attachment; message_en: File exceeds maximum size; "
            "resolution: Compress the file or split it")
    codes = {1: ("System error codes", "", text)}
    selector = _selector(analyzer, codes, max_quotes=1)
    evidence = selector.select("What do I do when the maximum number of sessions is reached?",
                               _hits(codes, suffix="csv"))
    assert evidence.answers(0.2)
    assert [t.split(";")[0] for t in evidence.texts()] == ["code: SYS-E-1042"]


CARD_LIMITS = {
    51: ("법인카드 발급 및 사용 규정", "3. 월 사용 한도", """구분 월 한도
사원 ~ 대리 100만원
팀장 300만원
임원 1,000만원
일시적인 한도 상향은 한도 변경 신청서(양식 FIN-F-013)에 부서장 승인을 받아 재무팀에 제출한다."""),
    52: ("Business Travel Policy", "5. Settlement", "Corporate card payments made during the trip are "
         "included in TR200 and are not settled again in EX200."),
}

OTHER_PASSAGES = (
    "법인카드 정산: 법인카드 사용 내역은 매월 5일까지 EX200에서 정산한다.",
    "법인카드 분실: 법인카드를 분실하면 카드사와 재무팀에 신고한다.",
    "여신 한도: 고객별 여신 한도는 재무팀이 정한다. 한도 초과 시 출하가 보류된다.",
    "구매 승인 한도: 발주 금액에 따라 승인 한도가 다르다.",
    "Corporate card statements are reconciled every month in EX200.",
    "A lost corporate card is reported to the card company at once.",
    "Travel requests are approved by the team leader in TR100.",
    "Vendor invoices are posted in IV300 after the goods receipt.",
    "Payment runs take place twice a month.",
)


def test_an_english_question_is_answered_by_the_korean_section_that_names_it(analyzer, embedder):
    # "corporate card spending limit": the Korean section's title and heading name all of it
    # through the glossary, the English sentence only the card. The default embedder cannot read
    # Hangul, so its similarity neither sinks the Korean table nor raises the English sentence.
    def embed(texts, input_type=None):
        return embedder.embed_queries(texts) if input_type == "query" else embedder.embed_passages(texts)

    selector = _selector(analyzer, CARD_LIMITS, others=OTHER_PASSAGES,  # the words' weights in a corpus
                         glossary=Glossary(analyzer), embed=embed, max_quotes=1)
    evidence = selector.select("What is the corporate card spending limit?", _hits(CARD_LIMITS, 52, 51))
    assert evidence.answers(0.2)
    assert [s.chunk_id for s in evidence.sources] == [51]
    assert "300만원" in "\n".join(evidence.texts())


OVERDUE = {
    71: ("여신 관리", "연체에 따른 자동 조치", """결제 기일이 지나도 입금되지 않은 채권이 있으면 경과 일수에 따라 다음 조치가 자동으로 적용됩니다.
- **30일 경과**: 영업 담당자에게 매일 알림이 발송됩니다.
- **60일 경과**: 새 출하 지시에 보류 코드 H1이 붙어 출고가 멈춥니다.
- **90일 경과**: 여신 등급이 D로 하향됩니다."""),
    72: ("여신 관리", "여신 한도 설정", "신규 고객의 여신 한도는 재무팀이 정한다. 한도는 매년 재평가한다."),
}


def test_a_bonus_ranks_spans_but_does_not_decide_whether_there_is_an_answer(analyzer):
    # "두 달" ranks the "60일 경과" item first; whether the documents answer at all is still
    # judged on the best match (the list's lead sentence), so the answer is not declined.
    selector = _selector(analyzer, OVERDUE, max_quotes=1)
    evidence = selector.select("외상값 연체가 두 달 넘어가면 어떤 조치가 걸려요?", _hits(OVERDUE))
    assert evidence.answers(0.2)
    assert "60일 경과" in "\n".join(evidence.texts())


def test_an_answer_quoted_in_the_readers_language_adds_no_other_language_quote(analyzer):
    # The Korean requisition guide shares "승인" and "발주" with the question through the
    # glossary; once the English limits table answers, it is no second quote.
    from .conftest import PASSAGES

    passages = {**PASSAGES, 9: ("구매요청(PR) 작성 가이드", "5. 승인 절차", "구매요청은 요청자 소속 팀장이 "
                                "승인한다. 금액에 따른 발주 승인은 PO 단계에서 별도로 진행된다.")}
    selector = _selector(analyzer, passages, glossary=Glossary(analyzer), budget_tokens=200)
    evidence = selector.select("Who approves a purchase order over 30 million won?", _hits(passages, 1, 9, 2))
    assert evidence.answers(0.2)
    assert 9 not in [s.chunk_id for s in evidence.sources]
    assert "CFO" in "\n".join(evidence.texts())
