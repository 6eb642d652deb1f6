from appliance.answers.compose import compose, no_answer
from appliance.answers.spans import HEADER, ROW, STEP

from .conftest import hit


def test_a_table_row_answer_brings_its_header(selector):
    evidence = selector.select("Who approves a purchase order of 60 million won?", [hit(4), hit(1), hit(2)])
    assert evidence.answers(0.25)
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
    evidence = selector.select("생산직도 반반차 쓸 수 있어요?", [hit(1), hit(3)])
    assert evidence.answers(0.25)
    assert any("반반차" in text for text in evidence.texts())


def test_an_unrelated_question_is_not_answered(selector):
    evidence = selector.select("How do I book a meeting room for Thursday?", [hit(1), hit(2), hit(4)])
    assert not evidence.answers(0.25)


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
