"""Korean questions find Korean documents, through morpheme-level BM25 fused with vectors."""

import pytest

from appliance.knowledge.analyzer import Analyzer, is_korean


def test_analyzer_splits_korean_into_content_morphemes():
    terms = Analyzer().terms("구매요청은 어떻게 승인하나요? PO-1001 오류")
    assert {"구매", "요청", "승인", "오류", "po-1001"} <= set(terms)
    assert "어떻다" not in terms


@pytest.mark.parametrize("question,document", [
    ("연차 휴가는 언제까지 신청해야 하나요?", "hr/annual-leave-request-ko.md"),
    ("재직증명서 발급은 어떻게 받나요?", "hr/certificate-issuance-ko.txt"),
    ("견적 요청서(RFQ)는 몇 개 업체에 보내야 하나요?", "purchasing/rfq-and-quotation-ko.txt"),
    ("구매요청 작성 방법", "purchasing/purchase-requisition-guide-ko.md"),
])
def test_korean_questions_find_korean_documents(sample_kb, question, document):
    assert is_korean(question)
    hits = sample_kb.search(question, 5)
    assert document in [h.document for h in hits]
    assert sample_kb.retriever.relevant(hits[0], question)


def test_english_questions_still_work(sample_kb):
    hits = sample_kb.search("Who releases a purchase order above the approval limit?", 5)
    assert "purchasing/purchase-order-approval.md" in [h.document for h in hits]


def test_unrelated_questions_are_not_relevant(sample_kb):
    for question in ("What is the boiling point of mercury on Mars?", "오늘 서울 날씨 어때요?"):
        hits = sample_kb.search(question, 3)
        assert not any(sample_kb.retriever.relevant(h, question) for h in hits), question


def test_the_glossary_carries_questions_across_languages(sample_kb):
    # An English question about a Korean-only document, and the reverse: the other language's
    # best chunks are interleaved with the question's own language's, a little lower.
    for mode in ("keyword", "hybrid"):
        hits = sample_kb.search("How do I write a purchase requisition?", 10, mode=mode)
        assert "purchasing/purchase-requisition-guide-ko.md" in [h.document for h in hits]
        hits = sample_kb.search("출장 일비는 얼마인가요?", 10, mode=mode)
        assert "hr/business-trip-policy.docx" in [h.document for h in hits]


def test_english_terms_are_stemmed_and_codes_kept_whole():
    analyzer = Analyzer()
    assert analyzer.terms("Approvals of requisitions") == analyzer.terms("approval of requisition")
    assert "hr300" in analyzer.terms("연차는 HR300에서 신청합니다")  # as English text has it
    assert "po-1001" in analyzer.terms("Release PO-1001 today")


def test_the_glossary_matches_whole_words_and_korean_compounds():
    from appliance.knowledge.glossary import Glossary

    glossary = Glossary(Analyzer())
    question = "Where is the information about the printer?"
    translated = glossary.translate(question, glossary.analyzer.terms(question))
    assert "양식" not in translated and "프린터" in translated  # "form" is not in "information"
    question = "출장 일비는 얼마인가요?"
    assert {"per", "diem"} <= set(glossary.translate(question, Analyzer().terms(question)))


def test_everyday_words_are_asked_in_the_manuals_words():
    from appliance.knowledge.glossary import Glossary

    glossary = Glossary(Analyzer())
    for question, written in (("The reminders went out with mistakes. Can I take the run back?",
                               {"dun"}),
                              ("A customer paid 3 euros short.", {"underpaid", "eur"}),
                              ("임시 저장한 기안이 사라졌는데 되살릴 수 있나요?", {"삭제", "복원"}),
                              ("결재를 재촉할 수 있나요?", {"독촉"})):
        terms = glossary.analyzer.terms(question)
        assert written <= set(glossary.rephrase(question, terms)), question
