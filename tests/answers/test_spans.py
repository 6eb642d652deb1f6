from appliance.answers.spans import HEADER, HEADING, ITEM, ROW, SENTENCE, STEP, cells, split_spans

TEXT = """Approvals follow the release strategy.
## 3. Approval limits
| Code | Value | Approver |
|---|---|---|
| R1 | up to 5,000,000 | Team Leader |
| R2 | 5,000,001 – 30,000,000 | Head of Procurement |
Additional rules:
- IT purchases need the IT Team Leader first.
- A buyer never releases own POs.
1. Open PO150.
2. Select the PO and press Release."""


def test_passage_units_know_their_kind_section_and_header():
    spans = split_spans(TEXT)
    kinds = [s.kind for s in spans]
    assert kinds == [SENTENCE, HEADING, HEADER, ROW, ROW, SENTENCE, ITEM, ITEM, STEP, STEP]
    header = spans[2]
    assert spans[3].header == 2 and cells(spans[3]) == ["R1", "up to 5,000,000", "Team Leader"]
    assert cells(header)[2] == "Approver"
    assert spans[4].section == "3. Approval limits"
    assert [s.number for s in spans if s.kind == STEP] == ["1", "2"]
    for span in spans:  # offsets point at the span's own text
        assert TEXT[span.start:span.end] == span.text


def test_korean_sentences_split_at_their_endings():
    spans = split_spans("휴가는 5일 전에 신청한다. 승인은 팀장이 합니다. 다음과 같다.")
    assert [s.text for s in spans] == ["휴가는 5일 전에 신청한다.", "승인은 팀장이 합니다.", "다음과 같다."]
    assert len({s.group for s in spans}) == 1  # one paragraph


def test_spreadsheet_rows_are_rows_with_labels():
    spans = split_spans("Code: AL; Leave type: Annual leave; Paid: Yes\nCode: SL; Leave type: Sick leave; Paid: Yes")
    assert [s.kind for s in spans] == [ROW, ROW] and all(s.labeled for s in spans)
    assert cells(spans[1]) == ["SL", "Sick leave", "Yes"]


def test_a_faq_label_stays_with_its_question():
    text = "**Q. 사고 직후 1시간 안에 속보를 못 보냈습니다.** 앱이 저장해 두었다가 보냅니다. Q. Can I undo it? A. Yes."
    assert [s.text for s in split_spans(text)] == [
        "**Q. 사고 직후 1시간 안에 속보를 못 보냈습니다.** 앱이 저장해 두었다가 보냅니다.", "Q. Can I undo it?", "A. Yes."]
    assert all(text[s.start:s.end] == s.text for s in split_spans(text))
