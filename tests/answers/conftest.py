"""Evidence tests run over a small real keyword index (Kiwi, Snowball) of hand-made passages."""

from __future__ import annotations

import pytest

from appliance.answers.evidence import EvidenceSelector
from appliance.knowledge.analyzer import Analyzer
from appliance.knowledge.glossary import Glossary
from appliance.knowledge.keyword import KeywordIndex
from appliance.knowledge.retrieval import Hit

PASSAGES = {
    1: ("Purchase Order Approval", "3. Approval limits", """The release strategy is determined from the net value of the PO.
| Release code | Net PO value (KRW) | Final approver |
|---|---|---|
| R1 | up to 5,000,000 | Purchasing Team Leader |
| R2 | 5,000,001 – 30,000,000 | Head of Procurement |
| R3 | 30,000,001 – 150,000,000 | CFO |
| R4 | above 150,000,000 | CEO |
Approvals are sequential: an R3 PO is first released by the Purchasing Team Leader, then by the Head of Procurement, and finally by the CFO."""),
    2: ("Purchase Order Approval", "2. Where POs are released", """To release a PO:
1. Open transaction PO150 (Purchasing > Purchase Order > Release).
2. Select the PO in your inbox.
3. Press Release, or Reject with a note."""),
    3: ("연차 휴가 신청 절차", "2. 신청 방법", """연차는 사용일 3영업일 전까지 HR100에서 신청한다.
- 반차는 오전(09:00~13:00) 또는 오후(14:00~18:00) 단위로 쓴다.
- 반반차는 사무직만 2시간 단위로 쓸 수 있다."""),
    4: ("Business Travel Policy", "4. Per diem", "The per diem for domestic trips is KRW 40,000 per day, paid with the travel settlement in TR200."),
}


def hit(chunk_id: int) -> Hit:
    title, heading, text = PASSAGES[chunk_id]
    return Hit(chunk_id, chunk_id, f"doc{chunk_id}.md", title, heading, None, None, text, 1.0, None, None, 1.0)


@pytest.fixture(scope="session")
def analyzer():
    return Analyzer()


@pytest.fixture(scope="session")
def selector(analyzer):
    index = KeywordIndex()
    for chunk_id, (title, heading, text) in PASSAGES.items():
        index.add(chunk_id, analyzer.terms(f"{title} {heading}\n{text}"))
    return EvidenceSelector(analyzer, idf=index.idf, unseen_idf=index.unseen_idf,
                            glossary=Glossary(analyzer), budget_tokens=200)
